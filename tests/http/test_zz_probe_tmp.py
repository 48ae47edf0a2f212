import logging
from tests.http.test_thousandeyes_errors import *  # noqa
from tests.http import test_thousandeyes_errors as m

def test_probe(te):
    logging.disable(logging.CRITICAL)
    tid = m.create_test(te)
    m.add_rounds(te.db, tid, te.agent_id, [m.ago(10)])
    def show(label, r):
        print("\n", label, r.status_code, r.headers.get("content-type"), r.text[:200])
    show("v7 ²", te.api.get("/v7/tests/http-server/%C2%B2", headers=te.auth))
    show("v6 ²", m.v6_snapshot(te, m.v6_body(1, testId="²")))
    show("v7 year1", m.v7_snapshot(te, tid, m.v7_body(startDate="0001-01-01T00:00:00+01:00")))
    show("v6 year1", m.v6_snapshot(te, m.v6_body(tid, **{"from": "0001-01-01T00:00:00+01:00"})))
    show("results empty", te.api.get(f"/v7/test-results/{tid}/http-server", headers=te.auth, params={"startDate": ""}))
    show("window", te.api.get(f"/v7/test-results/{tid}/http-server", headers=te.auth, params={"window": "999999w"}))
    show("agent ²", te.api.post("/v7/tests/http-server", headers=te.auth, json=m.http_test_body([te.agent_id], agents=[{"agentId": "²"}])))
    for c in [m._cursor(b"[" * 5000), m._cursor({"after": 10**30}), m._cursor({"after": True}), m._cursor({"after": -5})]:
        show("cursor", te.api.get(f"/v7/test-results/{tid}/http-server", headers=te.auth, params={"window": "1h", "cursor": c}))
