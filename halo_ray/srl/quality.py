def trace_quality(*a): pass
def filter_steps(*a): pass
