const assert = require("assert");
const { isZero, sameId } = require("../src/validate.js");
assert.strictEqual(isZero(0), true);
assert.strictEqual(isZero(""), false);
assert.strictEqual(isZero("0"), false);
assert.strictEqual(sameId(1, "1"), false);
assert.strictEqual(sameId(7, 7), true);
