import sys
n = int(sys.argv[1])
a, b = 0, 1
out = []
for _ in range(n - 1):
    out.append(a)
    a, b = b, a + b
print(' '.join(map(str, out)))
