import sys
values = [int(x) for x in open(sys.argv[1]).read().split(',')]
print(f"{sum(values) / len(values):.2f}")
