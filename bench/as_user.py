"""The benchmarks' user: logged in through the login form, and every page checked.

A benchmark that times requests must time what a user sees: since reads need a login,
an anonymous request times a redirect to the login page. ``logged_in_client`` creates a
user (with ``view_all_batches``, so nothing is hidden from it), logs in by posting the
login form as a browser would, and checks that the session is authenticated. ``checked``
raises ``PageError`` unless an answer is the page itself: the expected status (200) and a
non-empty body. Django must be set up before either is called.
"""

from __future__ import annotations

PERMISSIONS = ("webapp.view_all_batches",)


class PageError(AssertionError):
    """A request answered something other than the page a user would see."""


def create_user(username: str = "bench-reader", password: str = "pw-bench-reader-1",
                permissions: tuple[str, ...] = PERMISSIONS):
    """A user holding ``permissions`` ("app_label.codename")."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(username, password=password)
    for name in permissions:
        app_label, codename = name.split(".", 1)
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label,
                                                         codename=codename))
    return user


def logged_in_client(username: str = "bench-reader", password: str = "pw-bench-reader-1",
                     permissions: tuple[str, ...] = PERMISSIONS):
    """A test client logged in as a new user through the login form (POST, as a browser)."""
    from django.test import Client
    from django.urls import reverse

    user = create_user(username, password, permissions)
    client = Client()
    answer = client.post(reverse("login"), {"username": username, "password": password})
    if answer.status_code != 302 or str(user.pk) != client.session.get("_auth_user_id"):
        raise PageError(f"login as {username} failed: {answer.status_code} "
                        f"{answer.headers.get('Location', '')}")
    return client


def checked(response, url: str, status: int = 200):
    """``response`` if it is the page a user would see (``status``, non-empty body)."""
    body = response.content
    if response.status_code != status or not body:
        where = response.headers.get("Location", "")
        raise PageError(f"{url}: {response.status_code}"
                        + (f" -> {where}" if where else "")
                        + f" ({len(body)} bytes), expected {status} and a page")
    return response
