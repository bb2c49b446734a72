def test_content():
    assert open('/app/hello.txt').read() == 'Hello, world!\n'
