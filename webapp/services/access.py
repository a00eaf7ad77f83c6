"""Who may read what: the one place the app decides it (views, API and admin ask here).

- Reads (gallery, image pages, read API, search) need a logged-in user, unless the
  operator sets PUBLIC_READS=1; originals and batches are never public.
- A batch, its items and their failure reasons are visible to its owner and to users
  holding the explicit ``webapp.view_all_batches`` permission. The staff flag alone
  grants nothing; only the owner adds files to a batch or submits it.
- A scene's tiles are as private as the scene: a tile image (``Image.scene_only``) is in
  the collection only for those who may see one of its scenes; once the same bytes are
  uploaded as a file of their own, it is an ordinary image. The admin asks here too.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from webapp.conf import app_settings
from webapp.models import Batch, BatchItem, SceneTile

VIEW_ALL_BATCHES = "webapp.view_all_batches"


def can_read(user) -> bool:
    """Whether this user (or visitor) may read the collection."""
    return bool(user and user.is_authenticated) or app_settings.PUBLIC_READS


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


def _collection(user) -> Q:
    """Which images are in the collection for this user: all but the scene tiles it may
    not see. A tile image (``scene_only``: never uploaded as a file of its own) is listed
    only to those who may see one of its scenes. Users without scenes (most) get the
    plain indexed filter."""
    public = Q(scene_only=False)
    if not (user and user.is_authenticated):
        return public
    own = SceneTile.objects.filter(scene__batch__owner=user)
    if not own.exists():
        return public
    # IN (subquery), run once and hashed, not an EXISTS probed per image: beside the OR,
    # a correlated probe made tag-filtered pages 2-4x slower at a million images
    return public | Q(pk__in=own.values("image_id"))


def collection_images(user, images: QuerySet) -> QuerySet:
    """``images`` without the scene tiles this user may not see."""
    if user and user.is_authenticated and user.has_perm(VIEW_ALL_BATCHES):
        return images
    return images.filter(_collection(user))


def visible_images(user, images: QuerySet) -> QuerySet:
    """``images`` this user may open anywhere (the admin included): tagged collection
    images, and any image of a batch this user may see."""
    if user and user.is_authenticated and user.has_perm(VIEW_ALL_BATCHES):
        return images
    in_batch = Exists(BatchItem.objects.filter(image=OuterRef("pk"),
                                               batch__in=visible_batches(user)))
    ready = Q(status="ready") & _collection(user) if can_read(user) else Q(pk__in=[])
    return images.filter(ready | Q(in_batch))


def can_see_image(user, image) -> bool:
    """A tagged image belongs to the collection (a scene's tile only for those who may
    see the scene); one still pending (its batch maybe not even submitted) is seen only
    by those who may see one of its batches."""
    if image.status == image.Status.READY and can_read(user):
        return collection_images(user, type(image).objects.filter(pk=image.pk)).exists()
    return visible_batches(user).filter(items__image=image).exists()


def owns(user, batch: Batch) -> bool:
    return bool(user and user.is_authenticated and batch.owner_id == user.pk)


def client_ip(request) -> str | None:
    """The client's address: the connection's peer, or with NUM_PROXIES trusted proxies
    in front, the X-Forwarded-For entry the outermost of them wrote (as DRF's throttles
    decide). A forwarded header from anyone else is ignored."""
    peer = request.META.get("REMOTE_ADDR")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not app_settings.NUM_PROXIES or not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(app_settings.NUM_PROXIES, len(hops))] if hops else peer
