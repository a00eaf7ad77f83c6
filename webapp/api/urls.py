from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer
from rest_framework.routers import DefaultRouter

from webapp.api import search, views

router = DefaultRouter()
router.register("batches", views.BatchViewSet, basename="batch")
router.register("images", views.ImageViewSet, basename="image")
router.register("labels", views.LabelViewSet, basename="label")
router.register("models", views.ModelVersionViewSet, basename="modelversion")
router.register("scenes", views.SceneViewSet, basename="scene")
router.register("trainings", views.TrainingViewSet, basename="training")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves its start-up script as a file: no inline script (CSP)
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("search/", search.SearchView.as_view(), name="search"),
    path("scenes/<int:pk>/tiles.geojson", views.SceneViewSet.as_view(
        {"get": "tiles_geojson"}, renderer_classes=[JSONRenderer, views.GeoJSONRenderer]),
        name="scene-tiles-geojson"),
    path("scenes/<int:pk>/probabilities.tif", views.SceneViewSet.as_view(
        {"get": "probabilities"}, renderer_classes=[JSONRenderer, views.GeoTIFFRenderer]),
        name="scene-probabilities"),
    *router.urls,
]
