"""The store's Redis client without a server: URL forms, cluster slots and key routing,
and the hash tags that keep one request's keys on one slot."""

from __future__ import annotations

import pytest

from gateway import ratelimit
from inferia.store import keys
from inferia.store.client import command_key, key_slot, parse_url


def test_plain_url_with_user_password_and_db():
    config = parse_url("redis://app:s%40cret@cache.internal:6390/4")
    assert config.kind == "direct"
    assert config.hosts == (("cache.internal", 6390),)
    options = config.options
    assert (options.username, options.password, options.db, options.tls) == (
        "app",
        "s@cret",
        4,
        False,
    )


def test_password_only_and_defaults():
    config = parse_url("redis://:pw@localhost")
    assert config.hosts == (("localhost", 6379),)
    assert (config.options.username, config.options.password, config.options.db) == (None, "pw", 0)
    assert parse_url("redis://pw@localhost").options.password == "pw"


def test_tls_url_carries_its_certificate_options():
    config = parse_url(
        "rediss://h:6380/1?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
    )
    options = config.options
    assert options.tls and options.db == 1
    assert (options.ca_certs, options.certfile, options.keyfile) == (
        "/etc/ca.pem",
        "/c.pem",
        "/k.pem",
    )
    assert options.verify
    assert not parse_url("rediss://h?ssl_cert_reqs=none").options.verify


def test_unix_socket_url():
    config = parse_url("unix://:pw@/run/redis/redis.sock?db=3")
    assert config.kind == "unix" and config.path == "/run/redis/redis.sock"
    assert (config.options.password, config.options.db) == ("pw", 3)


def test_sentinel_url():
    config = parse_url(
        "redis+sentinel://u:p@10.0.0.1:26379,10.0.0.2,10.0.0.3:5000/mymaster/2?sentinel_password=sp"
    )
    assert config.kind == "sentinel" and config.service == "mymaster"
    assert config.hosts == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 5000))
    assert (config.options.username, config.options.password, config.options.db) == ("u", "p", 2)
    assert config.sentinel_options.password == "sp" and config.sentinel_options.db == 0
    assert parse_url("rediss+sentinel://h/svc").options.tls


def test_cluster_url():
    config = parse_url("redis+cluster://:pw@n1:7000,n2:7001")
    assert config.kind == "cluster"
    assert config.hosts == (("n1", 7000), ("n2", 7001))
    assert config.options.password == "pw"


@pytest.mark.parametrize(
    "url, message",
    [
        ("localhost:6379", "no scheme"),
        ("memcached://h", "unsupported"),
        ("redis+sentinel://h:26379", "names its service"),
        ("redis+cluster://h:7000/3", "only database 0"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, message):
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_key_slot_is_redis_clusters_crc16():
    # Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert key_slot("123456789") == 0x31C3 % 16384
    assert key_slot("foo") == 12182
    assert (
        key_slot("{user1000}.following") == key_slot("{user1000}.followers") == key_slot("user1000")
    )
    assert key_slot("foo{}{bar}") == key_slot("foo{}{bar}")  # an empty tag: the whole key
    assert key_slot("foo{}{bar}") != key_slot("bar")
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")


def test_commands_are_routed_by_their_first_key():
    assert command_key(("EVALSHA", "sha", 2, "k1", "k2", 1)) == "k1"
    assert command_key(("EVAL", "return 1", 0)) is None
    assert command_key(("XREADGROUP", "GROUP", "g", "c", "COUNT", 5, "STREAMS", "s", ">")) == "s"
    assert command_key(("XGROUP", "CREATE", "s", "g", "0", "MKSTREAM")) == "s"
    assert command_key(("INCRBY", "k", 3)) == "k"
    assert command_key(("PING",)) is None


def test_one_requests_keys_share_the_org_slot():
    org = "8c3e0c1e-2b1f-4e1a-9b7c-1234567890ab"
    limits = [
        ratelimit.Limit("key", ratelimit.REQUESTS, "k1", 3),
        ratelimit.Limit("principal", ratelimit.TOKENS, "user-x", 100),
        ratelimit.Limit("org", ratelimit.QUOTA_COST, org, 5),
    ]
    slots = {key_slot(limit.counter_key(org, 1.8e9)) for limit in limits}
    assert slots == {key_slot(keys.epoch(org))}
    assert keys.epoch(org) == f"inferia:{{{org}}}:epoch"


@pytest.mark.redis
def test_a_forked_child_opens_its_own_loop_and_connection(settings):
    """Celery's prefork pool forks after the parent used the store: the child must not
    share the parent's background loop (its thread is gone) or its socket."""
    import os

    from inferia.store import sync
    from tests.conftest import redis_command, redis_reachable, require_or_skip

    url = os.environ.get("REDIS_URL", "")
    if not url or not redis_reachable(url):
        require_or_skip("needs Redis: set REDIS_URL")
    settings.REDIS_URL = url
    name = keys.tagged("fork-test", "n")
    assert redis_command("SET", name, 1) == b"OK"  # the parent's loop and connection
    parent_loop = sync._loop
    assert parent_loop is not None
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 3
        try:
            fresh = sync._loop is None
            counted = redis_command("INCR", name) == 2
            code = 0 if fresh and counted and sync._loop is not parent_loop else 1
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert redis_command("GET", name) == b"2"  # the parent's connection still works
    redis_command("DEL", name)
