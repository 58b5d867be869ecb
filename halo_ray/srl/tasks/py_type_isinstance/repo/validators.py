def check_count(value):
    if type(value) == int:
        return value >= 0
    return False


def check_name(value):
    return type(value) == str and value != ""
