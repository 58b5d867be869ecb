check_count = _module("validators").check_count
check_name = _module("validators").check_name
class Name(str):
    pass
assert check_count(3) is True
assert check_count(-1) is False
assert check_count("3") is False
assert check_name(Name("ada")) is True
assert check_name("") is False
assert "type(" not in _read("validators.py")
