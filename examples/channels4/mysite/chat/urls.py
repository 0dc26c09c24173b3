from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("thumbnails/", views.thumbnails, name="thumbnails"),
    path("<str:room_name>/", views.room, name="room"),
]
