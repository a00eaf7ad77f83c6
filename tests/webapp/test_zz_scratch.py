import time
from tests.webapp.conftest import make_image

def test_probe(client, db, admin_client):
    for k in ["jpeg", "png"]:
        for s in (8, 16, 32, 64):
            print(k, s, len(make_image(k, s)))
    r = client.get("/api/docs/")
    print(r.status_code, r.content.decode()[:3000])
    r = client.get("/api/schema/")
    print(r.status_code, r["Content-Type"], r.content[:200])
    for q in ["batch=99999999999999999999999", "batch=-1", "min_confidence=nan", "page=zzz", "tags=%00"]:
        r = client.get("/gallery/?" + q); print(q, r.status_code)
        r = client.get("/api/images/?" + q); print(q, r.status_code)
    t = time.time()
    from webapp.services.model_registry import active_model
    m = active_model(); print("active", time.time() - t, m.labels)
