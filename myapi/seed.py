"""Demo data for ``myapi db seed --demo``: loaded once, never duplicated.

Each part is loaded only when its table is empty, so running the command
again (every ``make run`` does) changes nothing. The demo accounts are listed
in the README.
"""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select

from .common.auth import hash_password
from .db import get_session
from .models import Product, User
from .services import users as users_service

DEMO_ADMIN = ("admin", "admin@example.com", "demo-admin-pass")  # documented demo account
DEMO_CUSTOMERS = [
    ("alice", "alice@example.com"),
    ("bob", "bob@example.com"),
    ("carol", "carol@example.com"),
    ("dave", "dave@example.com"),
    ("erin", "erin@example.com"),
]
DEMO_CUSTOMER_PASSWORD = "demo-customer-pass"  # noqa: S105 (documented demo account)


def seed_users(session) -> int:
    if session.scalar(select(func.count()).select_from(User)):
        return 0
    username, email, password = DEMO_ADMIN
    users_service.create_user(session, username=username, email=email,
                              password_hash=hash_password(password), role="admin")
    customer_hash = hash_password(DEMO_CUSTOMER_PASSWORD)
    for priority, (username, email) in enumerate(DEMO_CUSTOMERS):
        users_service.create_user(session, username=username, email=email,
                                  password_hash=customer_hash, user_priority=priority % 5)
    return 1 + len(DEMO_CUSTOMERS)


# category -> (sku prefix, price range, nouns)
CATALOGUE = {
    "tea": ("TEA", (3, 25), ["Sencha", "Assam", "Darjeeling", "Oolong", "Rooibos", "Earl Grey", "Matcha",
                             "Chamomile", "Jasmine pearls", "Lapsang souchong"]),
    "coffee": ("COF", (6, 30), ["Espresso beans", "Filter roast", "Decaf", "Cold brew blend", "Mocha Java",
                                "Single origin Kenya", "Colombian supremo", "Ethiopian Yirgacheffe"]),
    "mugs": ("MUG", (5, 28), ["Mug", "Travel mug", "Espresso cup", "Latte bowl", "Tea cup", "Tumbler"]),
    "kitchen": ("KIT", (4, 120), ["Kettle", "Teapot", "French press", "Grinder", "Scale", "Milk frother",
                                  "Pour-over cone", "Tea strainer"]),
    "snacks": ("SNK", (2, 15), ["Shortbread", "Biscotti", "Dark chocolate", "Almond cookies", "Oat bars",
                                "Ginger snaps"]),
    "books": ("BOK", (9, 45), ["Tea atlas", "Coffee handbook", "Brewing at home", "The tea ceremony",
                               "Roasting basics"]),
}
ADJECTIVES = ["Classic", "Organic", "Premium", "Everyday", "Limited", "Smoky", "Bright", "Bold", "Gentle",
              "Rare", "Handmade", "Blue", "Stoneware", "Large", "Small", "Gift"]


def seed_products(session, count: int = 300) -> int:
    if session.scalar(select(func.count()).select_from(Product)):
        return 0
    rng = random.Random(2026)  # the same demo catalogue every time
    categories = list(CATALOGUE)
    for number in range(1, count + 1):
        category = categories[number % len(categories)]
        prefix, (low, high), nouns = CATALOGUE[category]
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(nouns)}"
        price = Decimal(rng.randint(low * 100, high * 100)) / 100
        session.add(Product(
            sku=f"{prefix}-{number:04d}",
            name=name,
            description=f"{name} from our {category} range.",
            category=category,
            price=price.quantize(Decimal("0.01")),
            stock=rng.choice([0, 3, 10, 25, 50, 100, 250]),
            is_available=rng.random() > 0.05,
        ))
    session.flush()
    return count


def seed_demo() -> dict[str, int]:
    """Load every demo part that is missing; returns what was added."""
    session = get_session()
    added = {"users": seed_users(session), "products": seed_products(session)}
    session.commit()
    return {name: count for name, count in added.items() if count}
