assert _node("checks/test_tags.js")
assert "indexOf" not in _read("src/tags.js")
