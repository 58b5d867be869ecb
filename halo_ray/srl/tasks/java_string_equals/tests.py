assert _java("TestMain")
assert '== "' not in _read("src/Commands.java")
assert "n == 0" in _read("src/Commands.java")
