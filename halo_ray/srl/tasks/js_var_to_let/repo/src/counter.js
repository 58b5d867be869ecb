function makeCounters(n) {
  const out = [];
  for (var i = 0; i < n; i++) {
    out.push(() => i);
  }
  return out;
}

module.exports = { makeCounters };
