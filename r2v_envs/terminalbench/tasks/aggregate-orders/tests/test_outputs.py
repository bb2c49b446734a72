import json

def test_summary():
    assert json.load(open('/app/summary.json')) == {'ann': 30.5, 'bob': 12.0, 'cy': 7.25}
