{
  "targets": [
    {
      "target_name": "moco3_native",
      "sources": ["src/addon.cc", "src/augment.cc", "src/kernels.cc", "src/kernels_base.cc", "src/kernels_avx2.cc"],
      "depends": ["src/augment.h", "src/kernels.h", "src/kernels.inc", "src/pool.h"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "/usr/include/openblas"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "conditions": [
        ["OS=='mac'", {
          "defines": ["MOCO3_ACCELERATE"],
          "libraries": ["-framework Accelerate"],
          "xcode_settings": {
            "GCC_OPTIMIZATION_LEVEL": "3",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
            "OTHER_CPLUSPLUSFLAGS": ["-fno-math-errno", "-fno-trapping-math"]
          }
        }],
        ["OS!='mac' and OS!='win'", {
          "cflags_cc": ["-O3", "-std=gnu++17", "-pthread", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-Wno-psabi"],
          "ldflags": ["-pthread"],
          "libraries": ["-lopenblas"]
        }]
      ]
    }
  ]
}
