"""Every stored user is reachable through the API, even one whose id holds ``/`` (percent-encoded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_harness import Live, live_server

from tailorlm.data import Document, User
from tailorlm.serve.paths import decoded_path

ODD = "team/alice"  # loaded by a loader or an older version; the API no longer creates such ids
PATH = "/v1/users/team%2Falice"


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("encoded")) as live:
        live.store.add([User(user_id=ODD, occupation="drummer"), User(user_id="team")])
        live.store.add([Document(user_id=ODD, doc_kind="review", text="Maple sticks last.", timestamp=5)])
        yield live


def test_an_id_with_a_slash_is_read_written_and_exported_percent_encoded(odd: Live) -> None:
    with odd.admin() as c:
        assert c.get(PATH).json()["user_id"] == ODD
        assert c.get("/v1/users/team%2falice").json()["user_id"] == ODD  # either case of the hex digits
        assert [d["text"] for d in c.get(f"{PATH}/documents").json()["data"]] == ["Maple sticks last."]
        assert c.post(f"{PATH}/documents", json={"doc_kind": "note", "text": "Gig on Friday."}).status_code == 201
        assert c.get(f"{PATH}/export").json()["user"]["user_id"] == ODD
        assert c.get("/v1/users/team").json()["user_id"] == "team"  # the prefix is another user


def test_a_scoped_key_for_such_a_user_reaches_only_it(odd: Live) -> None:
    with odd.as_user(ODD) as c:
        assert c.get(PATH).status_code == 200
        assert c.get("/v1/users/team").status_code == 403
    with odd.as_user("team") as c:
        assert c.get(PATH).status_code == 403


def test_deleting_it_deletes_only_it(odd: Live) -> None:
    with odd.admin() as c:
        assert c.delete(PATH).status_code == 200
        assert c.get(PATH).status_code == 404
        assert c.get("/v1/users/team").status_code == 200
    assert odd.store.get_user(user_id=ODD) is None


def test_a_nul_in_the_path_is_refused_not_aliased(odd: Live) -> None:
    with odd.admin() as c:
        r = c.get("/v1/users/team%00alice")
    assert r.status_code == 400 and "%00" in r.json()["error"]["message"]


def test_segments_decode_one_at_a_time() -> None:
    assert decoded_path(b"/v1/users/a%2Fb/documents") == "/v1/users/a\x00b/documents"
    assert decoded_path(b"/v1/users/caf%C3%A9") == "/v1/users/café"
    assert decoded_path(b"/v1/users/a%00b") is None
