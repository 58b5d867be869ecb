assert _java("TestMain")
assert "System.out" not in _read("src/Greeter.java")
