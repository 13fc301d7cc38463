"""Vocabulary of the synthetic catalog: latent themes shared by every domain,
and per-domain product templates.

A theme carries words (moods, occasions, flavours, materials) that show up in
the items of *every* domain it touches, so a model that reads text can carry a
user's taste from one domain to another; the product types, categories and
brand styles are the domain's own.
"""

from __future__ import annotations

# name, shared keywords (title/description words), occasion phrase
THEMES: list[tuple[str, list[str], str]] = [
    ("coastal summer picnic", ["Coastal", "Sea-Salt", "Lemon", "Breezy", "Seaside", "Picnic"], "a sunny picnic by the sea"),
    ("rustic italian dinner", ["Tuscan", "Rustic", "Olive", "Basil", "Trattoria", "Rosemary"], "a slow Italian family dinner"),
    ("spicy street food", ["Chili", "Smoky", "Street-Style", "Fiery", "Chipotle", "Night-Market"], "a night-market street food feast"),
    ("cozy winter baking", ["Cinnamon", "Cozy", "Gingerbread", "Nutmeg", "Hearth", "Snowy"], "baking on a snowy winter afternoon"),
    ("japanese minimal", ["Matcha", "Zen", "Umami", "Bamboo", "Kyoto", "Sakura"], "a calm Japanese-style tea ritual"),
    ("healthy fitness", ["Protein", "Lean", "Energy", "Whole-Grain", "Active", "Vital"], "a high-energy training routine"),
    ("kids birthday party", ["Rainbow", "Confetti", "Party", "Sprinkle", "Bubblegum", "Funfetti"], "a colourful kids' birthday party"),
    ("french patisserie", ["Parisian", "Butter", "Vanilla", "Praline", "Bistro", "Almond"], "an afternoon at a Paris patisserie"),
    ("campfire outdoors", ["Campfire", "Trail", "Rugged", "Pine", "Backcountry", "Ember"], "a weekend of camping and campfires"),
    ("mexican fiesta", ["Fiesta", "Lime", "Cilantro", "Salsa", "Cantina", "Agave"], "a Mexican fiesta with friends"),
    ("indian spice kitchen", ["Masala", "Turmeric", "Cardamom", "Saffron", "Tandoori", "Curry"], "an aromatic Indian home-cooked meal"),
    ("vegan plant-based", ["Plant-Based", "Vegan", "Green", "Oat", "Garden", "Sprout"], "a plant-based weekly meal plan"),
    ("barbecue grill master", ["BBQ", "Hickory", "Mesquite", "Grill", "Pitmaster", "Charred"], "a backyard barbecue cookout"),
    ("tea time english", ["Earl Grey", "English", "Scone", "Bergamot", "Cottage", "Teatime"], "a proper English afternoon tea"),
    ("holiday christmas", ["Holiday", "Peppermint", "Festive", "Yuletide", "Cranberry", "Merry"], "Christmas festivities with family"),
    ("coffee cafe culture", ["Espresso", "Barista", "Mocha", "Roast", "Cafe", "Crema"], "a slow morning at a neighbourhood cafe"),
    ("tropical island", ["Tropical", "Coconut", "Mango", "Pineapple", "Island", "Aloha"], "a tropical island getaway"),
    ("nordic hygge", ["Nordic", "Hygge", "Lingonberry", "Birch", "Fjord", "Woolen"], "a calm Scandinavian evening at home"),
    ("gourmet chocolate", ["Dark Cocoa", "Truffle", "Ganache", "Cacao", "Velvet", "Chocolatier"], "an indulgent chocolate tasting"),
    ("southern comfort", ["Southern", "Buttermilk", "Pecan", "Peach", "Honey", "Skillet"], "a Sunday Southern comfort-food dinner"),
    ("korean home cooking", ["Gochujang", "Kimchi", "Sesame", "Seoul", "Bulgogi", "Ginger"], "a Korean home-cooked dinner"),
    ("mediterranean sun", ["Mediterranean", "Feta", "Oregano", "Aegean", "Citrus", "Fig"], "a long lunch on a Greek terrace"),
    ("breakfast brunch", ["Brunch", "Maple", "Buttery", "Sunrise", "Pancake", "Morning"], "a lazy weekend brunch"),
    ("wine and cheese", ["Vintner", "Brie", "Cabernet", "Cellar", "Charcuterie", "Reserve"], "a wine and cheese evening"),
]

# domain -> (category root, [(product type, sub-category)], size templates, brand suffixes, description verbs)
DOMAINS: dict[str, tuple[str, list[tuple[str, str]], list[str], list[str], list[str]]] = {
    "food": (
        "Grocery & Gourmet Food",
        [
            ("Crackers", "Snacks"), ("Seasoning Blend", "Herbs & Spices"), ("Tea Sampler", "Beverages"),
            ("Cookie Mix", "Baking Mixes"), ("Hot Sauce", "Condiments"), ("Trail Mix", "Snacks"),
            ("Pasta Sauce", "Pantry Staples"), ("Granola", "Breakfast Foods"), ("Chocolate Bar", "Candy"),
            ("Coffee Beans", "Beverages"), ("Jam", "Spreads"), ("Popcorn Kernels", "Snacks"),
            ("Olive Oil", "Oils & Vinegars"), ("Candy Assortment", "Candy"), ("Soup Kit", "Pantry Staples"),
        ],
        ["{n} oz", "Pack of {k}", "{n} oz Jar", "{k}-Count Box"],
        ["Pantry", "Provisions", "Foods", "Kitchen Co.", "Farms"],
        ["tastes of", "brings the flavour of", "is made for"],
    ),
    "kitchen": (
        "Home & Kitchen",
        [
            ("Serving Platter", "Serveware"), ("Chef's Knife", "Cutlery"), ("Tea Kettle", "Kitchen Appliances"),
            ("Baking Sheet", "Bakeware"), ("Spice Rack", "Storage & Organization"), ("Cast Iron Skillet", "Cookware"),
            ("Table Linen Set", "Table Linens"), ("Mixing Bowl Set", "Bakeware"), ("Mug Set", "Drinkware"),
            ("French Press", "Coffee & Tea"), ("Cutting Board", "Kitchen Utensils"), ("Picnic Basket", "Outdoor Dining"),
            ("Dutch Oven", "Cookware"), ("Apron", "Kitchen Linens"), ("Food Storage Jars", "Storage & Organization"),
        ],
        ["{k}-Piece Set", "{n} inch", "Set of {k}", "{n} Quart"],
        ["Home", "Housewares", "Kitchenworks", "Living", "Goods"],
        ["sets the table for", "is designed for", "makes it easy to host"],
    ),
    "books": (
        "Books",
        [
            ("Cookbook", "Cookbooks, Food & Wine"), ("Travel Guide", "Travel"), ("Novel", "Literature & Fiction"),
            ("Memoir", "Biographies & Memoirs"), ("Picture Book", "Children's Books"), ("Field Guide", "Outdoors & Nature"),
            ("Craft Book", "Crafts & Hobbies"), ("Essay Collection", "Essays"), ("Photo Book", "Arts & Photography"),
        ],
        ["Hardcover, {n}0 pages", "Paperback", "Illustrated Edition", "{k}th Edition"],
        ["Press", "Books", "Publishing", "House", "Editions"],
        ["is a story about", "celebrates", "is a guide to"],
    ),
    "outdoors": (
        "Sports & Outdoors",
        [
            ("Cooler Bag", "Camping Gear"), ("Water Bottle", "Hydration"), ("Picnic Blanket", "Camping Gear"),
            ("Folding Chair", "Camp Furniture"), ("Lantern", "Lighting"), ("Backpack", "Bags & Packs"),
            ("Hammock", "Camp Furniture"), ("Camp Stove", "Camp Kitchen"), ("Beach Towel", "Beach Gear"),
        ],
        ["{n} L", "{k}-Person", "Ultralight", "{n} oz"],
        ["Outfitters", "Gear", "Trail Co.", "Outdoors", "Supply"],
        ["is built for", "comes along to", "is ready for"],
    ),
}
