"""News feeds (RSS and Atom) into the index: ``rag index --feed``, ``rag sync`` and a server's feed thread.

A sync reads each feed with a conditional GET and turns its items into articles (``items.py``): the
item's full text when the feed carries it (``content``/``content:encoded`` of at least
``FULL_TEXT_CHARS``), else the main text of its page, fetched conditionally too and extracted with
trafilatura. New and changed articles, from all feeds, go into one index write (``Writer.write``); an
item that left its feed is kept, or deleted with ``drop_removed``. What was seen — the validators (ETag,
Last-Modified) of each feed and page, each item and the hash of its text — is kept in
``<index>/feeds.json``, replaced atomically and only after the index write committed (``sync.py``): a
crash between the two makes the next sync fetch again what it had not recorded, never skip an item.
Syncs of one index folder take turns (a lock file).
"""
from index.feeds.items import FULL_TEXT_CHARS, Feed, Item, html_text, item_id, page_text, parse_every, parse_feed
from index.feeds.sync import (
    LOCK_FILE,
    STATE_FILE,
    FeedReport,
    StoreWriter,
    SyncReport,
    SyncStopped,
    Writer,
    load_state,
    save_state,
    sync_feeds,
)

__all__ = ["FULL_TEXT_CHARS", "LOCK_FILE", "STATE_FILE", "Feed", "FeedReport", "Item", "StoreWriter", "SyncReport",
           "SyncStopped", "Writer", "html_text", "item_id", "load_state", "page_text", "parse_every", "parse_feed",
           "save_state", "sync_feeds"]
