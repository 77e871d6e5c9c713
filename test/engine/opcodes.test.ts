/** The op codes the TypeScript side passes to the native kernels are the values of native/src/kernels.h's enums. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NATIVE_OP_CODES } from '../../src/engine/native-kernels.ts';

const header = readFileSync(join(import.meta.dirname, '..', '..', 'native', 'src', 'kernels.h'), 'utf8');

/** enum Name { A = 0, B, C = 5, D } -> {A: 0, B: 1, C: 5, D: 6} */
function cEnum(name: string): Map<string, number> {
  const m = new RegExp(`enum\\s+${name}\\s*\\{([^}]*)\\}`).exec(header);
  assert.ok(m, `kernels.h has no enum ${name}`);
  const out = new Map<string, number>();
  let next = 0;
  for (const item of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [k, v] = item.split('=').map((s) => s.trim());
    next = v === undefined ? next : Number(v);
    out.set(k!, next++);
  }
  return out;
}

// tfjs kernel names whose C enumerator is not PREFIX_ + the name in capitals
const ALIASES: Record<string, string> = {
  Multiply: 'MUL',
  RealDiv: 'DIV',
  Maximum: 'MAX',
  Minimum: 'MIN',
  SquaredDifference: 'SQDIFF',
  GreaterEqual: 'GREATER_EQ',
  LessEqual: 'LESS_EQ',
  NotEqual: 'NOT_EQUAL',
};

test('every native op code matches its enumerator in native/src/kernels.h', () => {
  let checked = 0;
  for (const [enumName, codes] of Object.entries(NATIVE_OP_CODES)) {
    const c = cEnum(enumName);
    const prefix = [...c.keys()][0]!.split('_')[0]!;
    for (const [op, code] of Object.entries(codes)) {
      const cName = `${prefix}_${ALIASES[op] ?? op.toUpperCase()}`;
      assert.equal(c.get(cName), code, `${enumName}.${op}: TypeScript passes ${code}, kernels.h has ${cName} = ${c.get(cName)}`);
      checked++;
    }
  }
  assert.ok(checked >= 30, `only ${checked} op codes checked`);
});

test('the enum parser counts on from an explicit value', () => {
  assert.equal(cEnum('BinaryOp').get('B_POW'), 7);
  assert.equal(cEnum('UnaryOp').get('U_COUNT'), 20);
});
