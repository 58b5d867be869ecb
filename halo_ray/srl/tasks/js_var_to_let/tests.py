assert _node("checks/test_counter.js")
assert "var " not in _read("src/counter.js")
