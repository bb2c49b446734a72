import os

def test_sorted():
    assert os.listdir('/app/inbox') == []
    for name, ext in [('notes.txt','txt'),('data.csv','csv'),('todo.txt','txt'),('app.log','log'),('more.csv','csv')]:
        assert os.path.isfile(f'/app/sorted/{ext}/{name}'), name

def test_content_kept():
    assert open('/app/sorted/csv/data.csv').read() == 'a,b\n1,2\n'
