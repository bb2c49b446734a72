import os

def test_backup():
    assert sorted(os.listdir('/app/backup')) == ['annual report.txt', 'notes.txt', 'q1 plan.md']
