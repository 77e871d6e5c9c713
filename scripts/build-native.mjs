// Placeholder: builds the optional native kernels; never fails the install.
console.log('moco3: native kernels not built (no native sources yet)');
