def item_names(stock):
    return sorted(stock.keys())


def report(stock):
    return ", ".join(f"{k}={stock[k]}" for k in sorted(stock.keys()))
