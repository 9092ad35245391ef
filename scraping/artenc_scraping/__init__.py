"""Scrapy project that downloads fine-art images and writes artenc manifests."""
