const assert = require("assert");
const { hasTag, missing } = require("../src/tags.js");
assert.strictEqual(hasTag(["a", "b"], "b"), true);
assert.strictEqual(hasTag(["a"], "z"), false);
assert.strictEqual(hasTag([NaN], NaN), true);
assert.deepStrictEqual(missing(["a"], ["a", "c"]), ["c"]);
