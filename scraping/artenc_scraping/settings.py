"""Scrapy settings of the artenc project: polite by default.

Override any of them with `-s NAME=VALUE` (scrapy) or `--set NAME=VALUE` (artenc scrape).
The output folder is IMAGES_STORE: images, manifest.csv and failures.csv go there.
"""

BOT_NAME = "artenc_scraping"
SPIDER_MODULES = ["artenc_scraping.spiders"]
NEWSPIDER_MODULE = "artenc_scraping.spiders"

USER_AGENT = "artenc-scraper/0.1 (fine-art research crawler; +https://pypi.org/project/artenc/)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 60
RETRY_TIMES = 2
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
LOGSTATS_INTERVAL = 30.0

# Off by default; `-s HTTPCACHE_ENABLED=1` (or `artenc scrape --cache`) keeps responses on disk,
# which makes a re-run after a crash or with `-a describe=1` cheap.
HTTPCACHE_ENABLED = False
HTTPCACHE_DIR = "httpcache"
HTTPCACHE_EXPIRATION_SECS = 0

ITEM_PIPELINES = {
    "artenc_scraping.pipelines.DedupPipeline": 100,
    "artenc_scraping.pipelines.ArtencImagesPipeline": 200,
    "artenc_scraping.pipelines.ManifestPipeline": 900,
}
IMAGES_STORE = "output"
IMAGES_MIN_WIDTH = 64
IMAGES_MIN_HEIGHT = 64
IMAGES_THUMBS: dict[str, tuple[int, int]] = {}  # e.g. {"small": (256, 256)} -> thumbs/small/
# JPEG quality of converted images and thumbnails (downloaded JPEGs are kept as they are);
# transparency is composited on white like `artenc embed` (pipelines.ArtencImagesPipeline)
IMAGES_JPEG_QUALITY = 95

# Resume an interrupted crawl with `-s JOBDIR=DIR`; rows already in manifest.csv are skipped.


FEED_EXPORT_ENCODING = "utf-8"
