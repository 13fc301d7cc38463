"""Small real catalogs written by the tests themselves (ITEMS schema, two shards)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from semacdr_dist.config import load_config
from semacdr_dist.data.schemas import ITEMS
from semacdr_dist.pipeline import semantics_config
from semacdr_dist.rundir import RunDir

# (domain, title, categories, brand, description): real-looking products of two domains.
ITEM_ROWS = [
    ("food", "La Tourangelle Roasted Almond Oil, 16.9 oz", ["Grocery", "Cooking Oils", "Almond Oil"], "La Tourangelle", "Artisan oil pressed from slow-roasted almonds; nutty flavour for salads, baking and finishing dishes."),
    ("food", "Lavazza Super Crema Whole Bean Coffee, 2.2 lb", ["Grocery", "Coffee", "Whole Bean Coffee"], "Lavazza", "Mild and creamy medium espresso roast with notes of hazelnut and brown sugar."),
    ("food", "Twinings Earl Grey Black Tea, 100 Tea Bags", ["Grocery", "Tea", "Black Tea"], "Twinings", "Black tea flavoured with bergamot oil, a fragrant classic for afternoon breaks."),
    ("food", "KIND Bars Dark Chocolate Nuts and Sea Salt, 12 Count", ["Grocery", "Snacks", "Nutrition Bars"], "KIND", "Gluten free snack bars made with whole nuts, dark chocolate and a touch of sea salt."),
    ("food", "Barilla Whole Grain Spaghetti, 16 oz", ["Grocery", "Pasta", "Spaghetti"], "Barilla", "Whole grain pasta with a hearty texture, cooks in 10 minutes, good source of fiber."),
    ("food", "Nature's Path Organic Pumpkin Seed Granola", ["Grocery", "Breakfast", "Granola"], "Nature's Path", "Crunchy organic granola with pumpkin seeds and flax, lightly sweetened for breakfast bowls."),
    ("food", "Frontier Co-op Organic Ground Cinnamon, 1.76 oz", ["Grocery", "Spices", "Cinnamon"], "Frontier Co-op", "Warm, sweet Ceylon-style cinnamon for baking, oatmeal and spiced drinks."),
    ("food", "Bob's Red Mill Gluten Free Oat Flour, 18 oz", ["Grocery", "Baking", "Flour"], "Bob's Red Mill", "Stone ground whole grain oat flour for gluten free baking of breads, muffins and pancakes."),
    ("food", "Sriracha Hot Chili Sauce, 17 oz", ["Grocery", "Condiments", "Hot Sauce"], "Huy Fong", "Spicy chili and garlic sauce that adds heat to noodles, eggs and stir fries."),
    ("food", "Manuka Honey UMF 10+, 8.8 oz", ["Grocery", "Sweeteners", "Honey"], "Manuka Health", "Raw New Zealand honey with a rich, earthy taste, for tea, toast or a spoonful on its own."),
    ("kitchen", "Lodge Cast Iron Skillet, 10.25 inch", ["Home", "Cookware", "Skillets"], "Lodge", "Pre-seasoned cast iron pan for searing, sauteing, baking and campfire cooking."),
    ("kitchen", "Victorinox Fibrox Pro Chef's Knife, 8 inch", ["Home", "Cutlery", "Chef Knives"], "Victorinox", "Stainless steel blade with a slip resistant handle, balanced for everyday chopping."),
    ("kitchen", "OXO Good Grips Salad Spinner", ["Home", "Kitchen Utensils", "Salad Spinners"], "OXO", "One-handed pump spinner that dries greens quickly; the bowl doubles as a serving dish."),
    ("kitchen", "Bodum Chambord French Press Coffee Maker, 34 oz", ["Home", "Coffee Makers", "French Presses"], "Bodum", "Classic glass and steel press that brews rich, full bodied coffee in four minutes."),
    ("kitchen", "Pyrex Glass Mixing Bowl Set, 3 Piece", ["Home", "Bakeware", "Mixing Bowls"], "Pyrex", "Nesting tempered glass bowls for mixing, marinating, microwaving and storing."),
    ("kitchen", "KitchenAid Artisan Stand Mixer, 5 Quart", ["Home", "Small Appliances", "Stand Mixers"], "KitchenAid", "Tilt-head mixer with ten speeds for bread dough, cake batter and whipped cream."),
    ("kitchen", "Le Creuset Enameled Dutch Oven, 5.5 qt", ["Home", "Cookware", "Dutch Ovens"], "Le Creuset", "Enameled cast iron pot for slow braises, soups, stews and crusty bread."),
    ("kitchen", "Zojirushi Rice Cooker and Warmer, 5.5 Cup", ["Home", "Small Appliances", "Rice Cookers"], "Zojirushi", "Fuzzy logic cooker for white, brown and sushi rice, with keep warm and timer."),
    ("kitchen", "Bamboo Cutting Board Set, 3 Pieces", ["Home", "Kitchen Utensils", "Cutting Boards"], "Royal Craft Wood", "Sturdy boards with juice grooves for meat, vegetables, bread and cheese platters."),
    ("kitchen", "Hario V60 Ceramic Coffee Dripper", ["Home", "Coffee Makers", "Pour Over"], "Hario", "Cone dripper with spiral ribs for slow, precise pour over brewing of single cups."),
]


def write_items(run: RunDir, n: int = 20, shard_size: int = 10, offset: int = 0) -> int:
    """``n`` items (cycling ITEM_ROWS) in shards of ``shard_size`` under run/items/."""
    rows = []
    for i in range(n):
        dom, title, cats, brand, desc = ITEM_ROWS[i % len(ITEM_ROWS)]
        suffix = "" if i < len(ITEM_ROWS) else f" (variant {i // len(ITEM_ROWS)})"
        rows.append({"item_id": offset + i, "domain": dom, "raw_id": f"{dom}-{i:05d}", "title": title + suffix,
                     "categories": cats, "brand": brand, "description": desc})  # fmt: skip
    for k, start in enumerate(range(0, n, shard_size)):
        run.write_table(f"items/part-{k:05d}.parquet", pa.Table.from_pylist(rows[start : start + shard_size], schema=ITEMS))
    return n


def small_config(*overrides: str):
    """The semantics stage's part of the real composed config, shrunk for tests (small batches,
    shards of a few views)."""
    base = [
        f"models_dir={os.environ['SEMACDR_MODELS_DIR']}",
        "llm.batch_size=10",
        "llm.shard_rows=10",
        "llm.max_tokens=40",
        "encoder.items_per_call=8",
    ]
    return semantics_config(load_config(base + list(overrides)))


@pytest.fixture
def run_items(tmp_path):
    run = RunDir(tmp_path / "run")
    write_items(run)
    return run
