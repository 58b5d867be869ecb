is_idle = _module("queue_utils").is_idle
next_job = _module("queue_utils").next_job
assert is_idle([]) is True
assert is_idle([1]) is False
assert next_job([]) is None
assert next_job(["a", "b"]) == "a"
assert "len(" not in _read("queue_utils.py")
