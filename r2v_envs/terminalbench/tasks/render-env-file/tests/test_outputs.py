def test_env():
    assert open('/app/.env').read() == 'DB_HOST=db.internal\nDB_PORT=5432\nURL=http://db.internal:5432/app\n'
