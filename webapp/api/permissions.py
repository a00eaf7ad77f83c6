from rest_framework import permissions

from webapp.services import access


class CanCurate(permissions.BasePermission):
    """Editing labels needs the webapp.curate_image permission (admins have it)."""

    message = "Editing labels needs curator rights (permission 'Can edit an image's labels')."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("webapp.curate_image"))


class ReadAccess(permissions.BasePermission):
    """Reads need a logged-in user unless PUBLIC_READS is on; writes always do."""

    message = "Log in to see the collection."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return access.can_read(request.user)
        return bool(request.user and request.user.is_authenticated)
