class Sentinel:
    def __eq__(self, other):
        return True


def lookup(table, key):
    value = table.get(key)
    if value == None:
        return "miss"
    return value
