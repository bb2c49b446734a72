import signal, sys
sys.path.insert(0, '/app')

def test_search():
    signal.alarm(5)
    from search import find
    items = [1, 3, 5, 7, 9, 11]
    assert [find(items, x) for x in items] == list(range(6))
    assert find(items, 4) == -1 and find(items, 12) == -1 and find([], 1) == -1
    signal.alarm(0)
