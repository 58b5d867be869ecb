assert _node("checks/test_validate.js")
assert " == " not in _read("src/validate.js")
