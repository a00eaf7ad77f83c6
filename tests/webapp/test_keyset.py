"""Keyset pages (webapp.services.keyset): following the links never skips or repeats an
image while images are added, ties in time are broken by id, counts stop at the cap,
bad cursors are refused, and the API's image list pages the same way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.models import Image
from webapp.services import keyset

pytestmark = pytest.mark.django_db


def add_images(count: int, start: int, when=None) -> list[int]:
    images = Image.objects.bulk_create([
        Image(sha256=f"{i:064x}", file=f"originals/{i}.jpg", original_name=f"k{i}.jpg",
              format="JPEG", size_bytes=1, width=8, height=8, status=Image.Status.READY)
        for i in range(start, start + count)])
    ids = [image.pk for image in images] if images[0].pk else list(
        Image.objects.filter(sha256__in=[f"{i:064x}" for i in range(start, start + count)])
        .values_list("pk", flat=True))
    if when is not None:  # images of one instant (a bulk upload): ties broken by id
        Image.objects.filter(pk__in=ids).update(created_at=when)
    return ids


def test_walking_the_pages_while_images_arrive_sees_each_once():
    base = timezone.now() - timedelta(days=1)
    old = add_images(7, 0, when=base)  # seven images of the same instant
    old += add_images(5, 100, when=base - timedelta(hours=1))
    seen, cursor, added = [], None, 1000
    while True:
        page = keyset.page(Image.objects.all(), 3, cursor)
        seen += [image.pk for image in page.object_list]
        add_images(2, added)  # newer images arrive between page views
        added += 2
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) and set(seen) == set(old)
    # and back again, from the last page to the newest
    back = []
    page = keyset.page(Image.objects.all(), 3, cursor)
    while True:
        back = [image.pk for image in page.object_list] + back
        if not page.has_previous:
            break
        page = keyset.page(Image.objects.all(), 3, page.previous_cursor)
    everything = list(Image.objects.order_by("-created_at", "-id").values_list("pk", flat=True))
    assert back == everything


def test_counts_stop_at_the_cap(monkeypatch):
    add_images(6, 0)
    assert keyset.page(Image.objects.all(), 2).count == 6
    assert keyset.capped_count(Image.objects.all(), cap=5) is None
    assert keyset.capped_count(Image.objects.all(), cap=6) == 6
    monkeypatch.setattr(keyset, "COUNT_CAP", 4)
    page = keyset.page(Image.objects.all(), 2)
    assert page.count is None and page.count_text == "more than 4 images"


@pytest.mark.parametrize("bad", ["zzz", "", "YXwxfDI", "YXx4fDI", "YXwyMDI2LTAxLTAxfC01"])
def test_cursors_this_app_did_not_write_are_refused(bad):
    if not bad:
        assert keyset.page(Image.objects.all(), 2, bad).object_list == []
        return
    with pytest.raises(keyset.BadCursor):
        keyset.page(Image.objects.all(), 2, bad)


def test_the_image_api_pages_by_cursor(api, monkeypatch):
    ids = add_images(5, 0)
    first = api.get("/api/images/?page_size=2").json()
    assert first["count"] == 5 and first["previous"] is None
    assert "cursor=" in first["next"]
    walked = [row["id"] for row in first["results"]]
    url = first["next"]
    while url:
        add_images(1, 500 + len(walked))  # arrivals never shift a page
        body = api.get(url).json()
        walked += [row["id"] for row in body["results"]]
        url = body["next"]
    assert walked == sorted(ids, reverse=True)
    assert api.get("/api/images/?cursor=zzz").status_code == 400
    monkeypatch.setattr(keyset, "COUNT_CAP", 3)
    body = api.get("/api/images/").json()
    assert body["count"] is None and body["more_than"] == 3


def test_the_admin_paginator_counts_exactly_up_to_the_cap_then_estimates(monkeypatch,
                                                                          admin_client):
    from webapp.admin import EstimatingPaginator, ImageAdmin

    add_images(5, 0)
    assert EstimatingPaginator(Image.objects.all(), 2).count == 5
    monkeypatch.setattr(keyset, "COUNT_CAP", 3)
    estimate = EstimatingPaginator(Image.objects.all(), 2).count
    assert estimate >= 4  # "more than 3": SQLite says 4, PostgreSQL's planner its guess
    assert ImageAdmin.show_full_result_count is False
    response = admin_client.get("/admin/webapp/image/")
    assert response.status_code == 200
    assert response.context["cl"].result_count == estimate


def test_estimates_are_shown_only_to_those_who_see_every_batch(monkeypatch, rf):
    """A planner estimate counts everyone's rows; a curator who sees part of them gets
    "more than the cap", never a number that includes what is hidden from them."""
    from django.contrib import admin
    from django.contrib.auth.models import Group, Permission, User

    from webapp.admin import ImageAdmin
    from webapp.models import Image as ImageModel

    add_images(6, 0)
    monkeypatch.setattr(keyset, "COUNT_CAP", 2)
    real = keyset.estimated_count  # the planner's figure stood in by a large one
    monkeypatch.setattr(keyset, "estimated_count", lambda images, planner=True:
                        1_000_000 if planner else real(images, planner=False))
    curator = User.objects.create_user("part", password="pw-part-1", is_staff=True)
    curator.groups.add(Group.objects.get(name="curators"))
    boss = User.objects.create_user("all", password="pw-all-1", is_staff=True)
    boss.groups.add(Group.objects.get(name="curators"))
    boss.user_permissions.add(Permission.objects.get(codename="view_all_batches"))
    admin_view = ImageAdmin(ImageModel, admin.site)
    for person, expected in ((curator, 3), (boss, 1_000_000)):
        request = rf.get("/admin/webapp/image/")
        request.user = User.objects.get(pk=person.pk)
        paginator = admin_view.get_paginator(request, ImageModel.objects.all(), 50)
        assert paginator.count == expected, person


def test_one_batch_pages_in_the_same_order_with_its_expression_ordering(user):
    """A batch's images are ordered by expressions (no index walk); pages by cursor,
    forwards and back, give the same newest-first order as the plain ordering."""
    from tests.webapp.conftest import make_image
    from tests.webapp.helpers import upload
    from webapp.services.gallery import ImageFilter, gallery_queryset

    batch, items = upload(user, [(f"b{i}.jpg", make_image(seed=70 + i)) for i in range(5)])
    Image.objects.filter(pk__in=[i.image_id for i in items[:3]]).update(
        created_at=timezone.now() - timedelta(hours=1))  # ties broken by id
    images = gallery_queryset(ImageFilter(batch=batch.pk, include_pending=True), user)
    expected = list(Image.objects.filter(pk__in=[i.image_id for i in items])
                    .order_by("-created_at", "-id").values_list("pk", flat=True))
    seen, cursor = [], None
    while True:
        page = keyset.page(images, 2, cursor)
        seen += [image.pk for image in page.object_list]
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert seen == expected
    back = keyset.page(images, 2, page.previous_cursor)
    assert [image.pk for image in back.object_list] == expected[2:4]
    assert [image.pk for image in keyset.offset_page(images, 2, 2).object_list] == expected[2:4]
