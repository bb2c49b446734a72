import configparser

def test_config():
    c = configparser.ConfigParser(); c.read('/app/config.ini')
    assert c['server']['port'] == '8080' and c['server']['debug'] == 'false'
    assert c['database']['port'] == '5432' and c['database']['debug'] == 'true'
