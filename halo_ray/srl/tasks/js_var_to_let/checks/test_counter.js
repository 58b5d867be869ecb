const assert = require("assert");
const { makeCounters } = require("../src/counter.js");
const counters = makeCounters(3);
assert.deepStrictEqual(counters.map((f) => f()), [0, 1, 2]);
