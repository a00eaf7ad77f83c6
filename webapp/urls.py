from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from webapp import views

admin.site.site_header = "Satellite image tagging: curation"
admin.site.site_title = "Curation"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="gallery", permanent=False)),
    path("gallery/", views.gallery, name="gallery"),
    path("images/<int:pk>/", views.image_detail, name="image-detail-page"),
    path("images/<int:pk>/<str:kind>", views.image_file, name="image-file"),
    path("upload/", views.upload, name="upload"),
    path("batches/", views.batch_list, name="batch-list-page"),
    path("batches/<int:pk>/", views.batch_detail, name="batch-detail-page"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("webapp.api.urls")),
]
