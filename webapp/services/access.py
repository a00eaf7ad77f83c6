"""Who may read what: the one place the app decides it (views, API and admin ask here).

- Reads (gallery, image pages, read API, search) need a logged-in user, unless the
  operator sets PUBLIC_READS=1; originals and batches are never public.
- A batch, its items and their failure reasons are visible to its owner and to users
  holding the explicit ``webapp.view_all_batches`` permission. The staff flag alone
  grants nothing; only the owner adds files to a batch or submits it.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet

from webapp.models import Batch

VIEW_ALL_BATCHES = "webapp.view_all_batches"


def can_read(user) -> bool:
    """Whether this user (or visitor) may read the collection."""
    return bool(user and user.is_authenticated) or settings.PUBLIC_READS


def can_see_people(user) -> bool:
    """Usernames (uploaders, curators) are shown to logged-in users only."""
    return bool(user and user.is_authenticated)


def visible_batches(user) -> QuerySet[Batch]:
    batches = Batch.objects.select_related("owner")
    if not (user and user.is_authenticated):
        return batches.none()
    if user.has_perm(VIEW_ALL_BATCHES):
        return batches
    return batches.filter(owner=user)


def can_see_image(user, image) -> bool:
    """A tagged image belongs to the collection; one still pending (its batch maybe not
    even submitted) is seen only by those who may see one of its batches."""
    if image.status == image.Status.READY:
        return can_read(user)
    return visible_batches(user).filter(items__image=image).exists()


def owns(user, batch: Batch) -> bool:
    return bool(user and user.is_authenticated and batch.owner_id == user.pk)


def client_ip(request) -> str | None:
    """The client's address: the connection's peer, or with NUM_PROXIES trusted proxies
    in front, the X-Forwarded-For entry the outermost of them wrote (as DRF's throttles
    decide). A forwarded header from anyone else is ignored."""
    peer = request.META.get("REMOTE_ADDR")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not settings.NUM_PROXIES or not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(settings.NUM_PROXIES, len(hops))] if hops else peer
