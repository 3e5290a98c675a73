"""The web page at `/`: search by picture in the browser (templates/index.html, static/app.js)."""

from __future__ import annotations

from flask import Blueprint, render_template

from search_service.inputs import TOP_K_DEFAULT, TOP_K_MAX

bp = Blueprint("web", __name__)  # templates/ and static/ are the app's own folders


@bp.get("/")
def index():
    """The search page; everything it needs is served from this origin (works offline)."""
    return render_template("index.html", top_k=TOP_K_DEFAULT * 2, top_k_max=TOP_K_MAX)
