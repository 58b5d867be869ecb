function hasTag(tags, tag) {
  return tags.indexOf(tag) !== -1;
}

function missing(tags, wanted) {
  return wanted.filter((w) => !(tags.indexOf(w) !== -1));
}

module.exports = { hasTag, missing };
