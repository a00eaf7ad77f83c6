
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from webapp import views
from webapp.conf import app_settings

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
    path("scenes/<int:pk>/", views.scene_detail, name="scene-detail-page"),
    path("scenes/<int:pk>/preview.png", views.scene_preview, name="scene-preview"),
    path("review/", views.review_page, name="review-page"),
    path("trainings/", views.trainings_page, name="trainings-page"),
    path("models/<int:pk>/compare/", views.model_compare, name="model-compare-page"),
    path("healthz", views.healthz, name="healthz"),
    # browsers ask for /favicon.ico before they read a page's <link rel="icon">
    path("favicon.ico", RedirectView.as_view(url=static("webapp/favicon.svg"), permanent=True)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(),
         name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(),
         name="password_change_done"),
    path("admin/", admin.site.urls),
    path("api/", include("webapp.api.urls")),
]

if app_settings.PASSWORD_RESET:  # mail is configured (EMAIL_HOST): reset links can be sent
    urlpatterns += [
        path("accounts/password_reset/", auth_views.PasswordResetView.as_view(),
             name="password_reset"),
        path("accounts/password_reset/done/", auth_views.PasswordResetDoneView.as_view(),
             name="password_reset_done"),
        path("accounts/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
             name="password_reset_confirm"),
        path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(),
             name="password_reset_complete"),
    ]

handler404 = "webapp.views.not_found"
