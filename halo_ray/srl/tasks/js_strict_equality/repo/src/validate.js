function isZero(x) {
  return x == 0;
}

function sameId(a, b) {
  return a == b;
}

module.exports = { isZero, sameId };
