def test_redacted():
    assert open('/app/app.log').read() == 'login user=ann password=**** ok\nreset password=**** by admin\nno secrets here\n'
