"""Demo data for ``myapi db seed --demo``: loaded once, never duplicated.

Each part is loaded only when its table is empty, so running the command
again (every ``make run`` does) changes nothing. The demo accounts are listed
in the README.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from sqlalchemy import func, select

from .common.auth import hash_password
from .db import get_session
from .models import CENT, Order, OrderItem, Product, User, utcnow
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
EXTRA_CUSTOMERS = 20  # customer01..customer20, same password, so the reports have a crowd


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
    for number in range(1, EXTRA_CUSTOMERS + 1):
        users_service.create_user(session, username=f"customer{number:02d}",
                                  email=f"customer{number:02d}@example.com",
                                  password_hash=customer_hash, user_priority=number % 5)
    return 1 + len(DEMO_CUSTOMERS) + EXTRA_CUSTOMERS


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


DEMO_PRODUCT_COUNT = 300


def seed_products(session, count: int = DEMO_PRODUCT_COUNT) -> int:
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


STATUS_WEIGHTS = {"pending": 10, "paid": 20, "shipped": 20, "completed": 40, "cancelled": 10}
STREETS = ["High Street", "Station Road", "Church Lane", "Mill Road", "Park Avenue", "Queen Street"]


def seed_orders(session, count: int = 400) -> int:
    """Orders over the last year, in every status, so the reports show something."""
    if session.scalar(select(func.count()).select_from(Order)):
        return 0
    rng = random.Random(7)
    customers = list(session.scalars(select(User).where(User.role == "customer")))
    products = list(session.scalars(select(Product).where(Product.is_available.is_(True), Product.stock > 0)))
    if not customers or not products:
        # e.g. ``users create-admin`` ran before the first seed: the users part
        # was skipped (the table was not empty), so there is no one to order.
        return 0
    now = utcnow()
    statuses, weights = zip(*STATUS_WEIGHTS.items(), strict=True)
    placed = 0
    for _ in range(count):
        picks = [p for p in rng.sample(products, min(rng.randint(1, 4), len(products))) if p.stock > 0]
        if not picks:
            continue
        status = rng.choices(statuses, weights)[0]
        when = now - dt.timedelta(days=rng.uniform(0, 365), minutes=rng.uniform(0, 600))
        order = Order(user_id=rng.choice(customers).id, status=status, date_created=when, date_updated=when,
                      shipping_address=f"{rng.randint(1, 200)} {rng.choice(STREETS)}")
        total = Decimal("0.00")
        for product in picks:
            quantity = rng.randint(1, min(3, product.stock))
            if status != "cancelled":  # cancelled orders gave their stock back
                product.stock -= quantity
            order.items.append(OrderItem(product_id=product.id, product_name=product.name,
                                         quantity=quantity, unit_price=product.price))
            total += product.price * quantity
        order.total_amount = total.quantize(CENT)
        session.add(order)
        placed += 1
    session.flush()
    return placed


def seed_demo() -> dict[str, int]:
    """Load every demo part that is missing; returns what was added."""
    session = get_session()
    added = {"users": seed_users(session), "products": seed_products(session)}
    added["orders"] = seed_orders(session)
    session.commit()
    return {name: count for name, count in added.items() if count}
