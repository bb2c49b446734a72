def test_emails():
    assert open('/app/emails.txt').read().split() == ['ann@example.com', 'bob.smith@mail.org', 'zed@corp.io']
