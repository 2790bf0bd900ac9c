"""Redis locations in the config: Sentinel and Cluster URLs and mappings, env override, redaction (#15)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubq.config import parse_config
from pubq.errors import ConfigError
from pubq.redis_url import parse_redis_url, redact, url_from_mapping

QUEUES = {"work": {"driver": "redis"}}


def load(redis: object, env: dict[str, str] | None = None, **queue: object):
    raw = {"redis": redis, "queues": {"work": {"driver": "redis", **queue}}}
    return parse_config(raw, Path("pubq.yaml"), Path("."), env=env or {}, check_handlers=False)


def test_a_sentinel_url_names_its_sentinels_service_db_and_password():
    t = parse_redis_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2")
    assert t.kind == "sentinel" and t.service == "mymaster" and t.db == 2 and t.password == "s3cret"
    assert t.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))


def test_a_cluster_url_has_nodes_and_no_database():
    t = parse_redis_url("redis+cluster://h1:7000,h2:7001/")
    assert t.kind == "cluster" and t.nodes == (("h1", 7000), ("h2", 7001))
    with pytest.raises(ValueError, match="has no databases"):
        parse_redis_url("redis+cluster://h1:7000/3")


@pytest.mark.parametrize("url, says", [
    ("redis+sentinel://h1:26379/", "service name is missing"),
    ("redis+sentinel://h1:99999/m", "port must be a number"),
    ("redis+sentinel://h1/m/x", "DB a number"),
    ("redis+cluster:///", "no nodes given"),
    ("redis+cluster://h:1/?x=1", r"take no \?options"),
])
def test_malformed_urls_are_refused_with_the_reason(url, says):
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)


def test_the_mapping_forms_become_the_same_urls():
    assert url_from_mapping({"sentinels": ["a:1", "b"], "service": "m", "db": 1, "password": "p w"}) == \
        "redis+sentinel://:p%20w@a:1,b:26379/m/1"
    assert url_from_mapping({"cluster": ["a:7000", "b:7001"]}) == "redis+cluster://a:7000,b:7001/"
    assert parse_redis_url(url_from_mapping({"sentinels": ["a:1"], "service": "m", "password": "p w"})).password \
        == "p w"


def test_config_takes_urls_and_mappings_and_the_env_overrides_them():
    assert load("redis+cluster://h1:7000/").queues["work"].url == "redis+cluster://h1:7000/"
    cfg = load({"sentinels": ["h1:26379"], "service": "m"})
    assert cfg.redis == "redis+sentinel://h1:26379/m/0"
    env = {"PUBQ_REDIS_URL": "redis+sentinel://h9/other/3"}
    assert load("redis://localhost/0", env=env).queues["work"].url == "redis+sentinel://h9/other/3"


@pytest.mark.parametrize("value, where", [
    ({"sentinels": ["h1"]}, "redis.service"),
    ({"sentinels": ["h1"], "service": "m", "colour": 1}, "redis.colour"),
    ({"cluster": ["h1"], "service": "m"}, "redis"),
    ({"sentinels": [], "service": "m"}, "redis.sentinels"),
    ("redis+sentinel://:topsecret@h1/", "redis"),
])
def test_a_bad_redis_setting_is_one_line_naming_the_key_and_never_the_password(value, where):
    with pytest.raises(ConfigError) as err:
        load(value)
    text = str(err.value)
    assert f"pubq.yaml: {where}:" in text and "\n" not in text and "topsecret" not in text


def test_durability_shards_and_shard_key_are_checked_and_redis_only():
    q = load("redis://h/0", durability={"replicas": 2, "timeout_ms": 50}, shards=4, shard_key="article").queues["work"]
    assert (q.durability.replicas, q.durability.timeout_ms, q.shards, q.shard_key) == (2, 50, 4, "article")
    for opts, says in [({"shards": 0}, "shards: must be an integer from 1 to 100"),
                       ({"shard_key": "a"}, "shard_key: needs shards: 2 or more"),
                       ({"durability": {"replicas": 0}}, "durability.replicas: must be an integer from 1"),
                       ({"durability": {"timeout": 5}}, "durability.timeout: unknown key")]:
        with pytest.raises(ConfigError, match=says):
            load("redis://h/0", **opts)
    raw = {"queues": {"work": {"driver": "db", "shards": 2}}}
    with pytest.raises(ConfigError, match="only a redis queue takes shards"):
        parse_config(raw, Path("pubq.yaml"), Path("."), env={}, check_handlers=False)


@given(st.text(alphabet=st.characters(blacklist_characters="@/", blacklist_categories=("Cs",)), min_size=1))
def test_redact_never_leaves_a_password_in_a_url(password):
    url = f"redis+sentinel://:{password}@h1:26379/m/0"
    shown = redact(f"cannot reach {url} now")
    assert "***" in shown and shown.endswith("@h1:26379/m/0 now")
