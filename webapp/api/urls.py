from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from webapp.api import search, views

router = DefaultRouter()
router.register("batches", views.BatchViewSet, basename="batch")
router.register("images", views.ImageViewSet, basename="image")
router.register("labels", views.LabelViewSet, basename="label")
router.register("models", views.ModelVersionViewSet, basename="modelversion")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves its start-up script as a file: no inline script (CSP)
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("search/", search.SearchView.as_view(), name="search"),
    *router.urls,
]
