"""A fake Web Gallery of Art: hand-written catalogue rows, generated images, scripted faults."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from PIL import Image

from .server import FixtureServer, Route

HEADER = "AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME"
ROBOTS = b"User-agent: *\nDisallow: /art/p/private/\n"


@dataclass(frozen=True)
class Work:
    """One catalogue row; `image` says how its image is served."""

    author: str
    born_died: str
    title: str
    date: str
    technique: str
    location: str
    slug: str  # path under /html/ and /art/, without extension
    form: str
    type: str
    school: str
    timeframe: str
    image: str = "jpeg"  # jpeg png 404 flaky slow truncated html tiny robots none

    @property
    def page_path(self) -> str:
        return f"/html/{self.slug}.html"

    @property
    def image_path(self) -> str:
        return f"/art/{self.slug}.jpg"


WORKS = [
    Work("AACHEN, Hans von", "(b. 1552, Köln, d. 1615, Praha)", "Allegory", "1598",
         "Oil on copper, 56 x 47 cm", "Alte Pinakothek, München", "a/aachen/allegory",
         "painting", "mythological", "German", "1551-1600"),
    Work("DÜRER, Albrecht", "(b. 1471, Nürnberg, d. 1528, Nürnberg)", "Self-Portrait", "1500",
         "Oil on wood", "Musée du Louvre, Paris", "d/durer/1/selfport",
         "painting", "portrait", "German", "1501-1550", image="png"),
    Work("ÉCOLE, Maître de l'", "(active c. 1500)", "Study; head of a woman", "c. 1500",
         "Chalk; heightened with white", "Galleria degli Uffizi, Firenze", "e/ecole/study",
         "graphics", "study", "French", "1501-1550"),
    Work("FLAKY, Painter", "(b. 1600, d. 1650)", "Retried", "1630", "Oil on canvas",
         "Private collection", "f/flaky/retried", "painting", "genre", "Dutch", "1601-1650",
         image="flaky"),
    Work("SCULPTOR, Anonymous", "(active 1400s)", "Madonna", "1450", "Marble",
         "Museo Nazionale, Firenze", "s/sculptor/madonna",
         "sculpture", "religious", "Italian", "1401-1450"),
    Work("MISSING, Painter", "(b. 1500, d. 1560)", "Lost work", "1540", "Oil on panel",
         "Unknown", "m/missing/lost", "painting", "religious", "Italian", "1501-1550",
         image="404"),
    Work("SLOW, Painter", "(b. 1500, d. 1560)", "Slow work", "1540", "Oil on panel",
         "Unknown", "s/slow/late", "painting", "religious", "Italian", "1501-1550",
         image="slow"),
    Work("BROKEN, Painter", "(b. 1500, d. 1560)", "Truncated", "1540", "Oil on panel",
         "Unknown", "b/broken/cut", "painting", "religious", "Italian", "1501-1550",
         image="truncated"),
    Work("BROKEN, Painter", "(b. 1500, d. 1560)", "Not an image", "1540", "Oil on panel",
         "Unknown", "b/broken/page", "painting", "religious", "Italian", "1501-1550",
         image="html"),
    Work("TINY, Painter", "(b. 1500, d. 1560)", "Miniature", "1540", "Oil on panel",
         "Unknown", "t/tiny/mini", "painting", "portrait", "Italian", "1501-1550",
         image="tiny"),
    Work("PRIVATE, Painter", "(b. 1500, d. 1560)", "Forbidden", "1540", "Oil on panel",
         "Unknown", "p/private/secret", "painting", "portrait", "Italian", "1501-1550",
         image="robots"),
]  # fmt: skip
BAD_ROW = "BAD, Row;(b. 1500);No page;1500;Oil;Nowhere;{base}/docs/readme.txt;painting;other;German;1501-1550"


def catalogue_text(base: str, works: list[Work] = WORKS, extras: bool = True) -> str:
    """The catalogue in WGA's format: `;`-separated, fields with `;` or `,` quoted, CRLF lines.

    `extras` appends a duplicate of the first row and a row whose URL is not an artwork page.
    """
    lines = [HEADER]
    for work in [*works, *(works[:1] if extras else [])]:
        fields = [
            work.author, work.born_died, work.title, work.date, work.technique, work.location,
            base + work.page_path, work.form, work.type, work.school, work.timeframe,
        ]  # fmt: skip
        lines.append(";".join(_quote(f) for f in fields))
    if extras:
        lines.append(BAD_ROW.format(base=base))
    return "\r\n".join(lines) + "\r\n"


def _quote(field: str) -> str:
    if any(c in field for c in ';,"'):
        return '"' + field.replace('"', '""') + '"'
    return field


def zipped(name: str, data: bytes) -> bytes:
    """`data` as the only member `name` of a zip archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buf.getvalue()


def image_bytes(index: int, fmt: str = "JPEG", size: tuple[int, int] = (96, 80)) -> bytes:
    """A small distinct image (its colour depends on `index`)."""
    colour = ((53 * index) % 256, (97 * index + 40) % 256, (151 * index + 80) % 256)
    image = Image.new("RGB", size, colour)
    image.putpixel((index % size[0], 0), (255 - colour[0], 0, 0))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def image_route(index: int, kind: str) -> Route | None:
    """How the image of a work of `kind` is served (None: not at all, a 404)."""
    if kind in ("404", "none"):
        return None
    if kind == "png":
        return Route(image_bytes(index, "PNG"), "image/png")
    if kind == "truncated":
        full = image_bytes(index, size=(400, 300))
        return Route(full[: len(full) // 2], "image/jpeg")
    if kind == "html":
        return Route(b"<html><body>Please log in</body></html>", "text/html")
    if kind == "tiny":
        return Route(image_bytes(index, size=(16, 16)), "image/jpeg")
    route = Route(image_bytes(index), "image/jpeg")
    if kind == "flaky":
        route.fail_first = 1
    if kind == "slow":
        route.delay = 4.0
    return route


def serve_wga(
    server: FixtureServer, works: list[Work] = WORKS, extras: bool = True
) -> dict[str, bytes]:
    """Register robots.txt, the catalogues, pages and images; return image URL -> bytes served."""
    server.routes["/robots.txt"] = Route(ROBOTS, "text/plain")
    text = catalogue_text(server.base, works, extras)
    server.routes["/catalog.txt"] = Route(text.encode("iso-8859-1"), "text/plain")
    server.routes["/data_txt.zip"] = Route(
        zipped("catalog.txt", text.encode("utf-8")), "application/zip"
    )
    served = {}
    for index, work in enumerate(works):
        server.routes[work.page_path] = Route(
            f"<html><body><p>{work.title}</p><p>About  {work.author}.</p></body></html>".encode(),
            "text/html; charset=utf-8",
        )
        route = image_route(index, work.image)
        if route is not None:
            server.routes[work.image_path] = route
            served[server.url(work.image_path)] = route.body
    return served
