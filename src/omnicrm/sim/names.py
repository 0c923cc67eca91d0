"""Word lists of the synthetic data set: Ukrainian names, employers, branches and code tables."""

from __future__ import annotations

from functools import lru_cache
from typing import Final

# Male first names with the patronymics they give a son and a daughter.
MALE_NAMES: Final[tuple[tuple[str, str, str], ...]] = (
    ("Олександр", "Олександрович", "Олександрівна"),
    ("Іван", "Іванович", "Іванівна"),
    ("Микола", "Миколайович", "Миколаївна"),
    ("Андрій", "Андрійович", "Андріївна"),
    ("Сергій", "Сергійович", "Сергіївна"),
    ("Юрій", "Юрійович", "Юріївна"),
    ("Петро", "Петрович", "Петрівна"),
    ("Василь", "Васильович", "Василівна"),
    ("Володимир", "Володимирович", "Володимирівна"),
    ("Дмитро", "Дмитрович", "Дмитрівна"),
    ("Михайло", "Михайлович", "Михайлівна"),
    ("Олег", "Олегович", "Олегівна"),
    ("Ігор", "Ігорович", "Ігорівна"),
    ("Віктор", "Вікторович", "Вікторівна"),
    ("Анатолій", "Анатолійович", "Анатоліївна"),
    ("Богдан", "Богданович", "Богданівна"),
    ("Тарас", "Тарасович", "Тарасівна"),
    ("Григорій", "Григорович", "Григорівна"),
    ("Степан", "Степанович", "Степанівна"),
    ("Роман", "Романович", "Романівна"),
    ("Євген", "Євгенович", "Євгенівна"),
    ("Віталій", "Віталійович", "Віталіївна"),
    ("Максим", "Максимович", "Максимівна"),
    ("Артем", "Артемович", "Артемівна"),
    ("Павло", "Павлович", "Павлівна"),
    ("Денис", "Денисович", "Денисівна"),
    ("Олексій", "Олексійович", "Олексіївна"),
    ("Валерій", "Валерійович", "Валеріївна"),
    ("Леонід", "Леонідович", "Леонідівна"),
    ("Ярослав", "Ярославович", "Ярославівна"),
    ("Костянтин", "Костянтинович", "Костянтинівна"),
    ("Назар", "Назарович", "Назарівна"),
)
FEMALE_NAMES: Final[tuple[str, ...]] = (
    "Олена", "Наталія", "Тетяна", "Ірина", "Оксана", "Світлана", "Юлія", "Марія", "Людмила",
    "Галина", "Ольга", "Анна", "Катерина", "Вікторія", "Надія", "Валентина", "Лариса", "Інна",
    "Алла", "Христина", "Дарина", "Софія", "Анастасія", "Яна", "Тамара", "Віра", "Любов",
    "Зоряна", "Соломія", "Мирослава", "Ганна", "Мар'яна", "Євгенія", "Ярина",
)  # fmt: skip
# Surnames as (male form, female form); most Ukrainian surnames do not change with gender.
_INVARIANT: Final = (
    "Шевченко", "Коваленко", "Бондаренко", "Ткаченко", "Кравченко", "Олійник", "Шевчук", "Поліщук",
    "Коваль", "Бойко", "Ткачук", "Мельник", "Савченко", "Петренко", "Лисенко", "Руденко", "Марченко",
    "Мороз", "Клименко", "Павленко", "Мельничук", "Левченко", "Гончаренко", "Романенко", "Кузьменко",
    "Кравчук", "Литвиненко", "Карпенко", "Онищенко", "Юрченко", "Савчук", "Зінченко", "Гнатюк",
    "Костенко", "Войтенко", "Кравець", "Захарчук", "Антонюк", "Сидоренко", "Даниленко", "Федоренко",
    "Гуменюк", "Білоус", "Яковенко", "Остапенко", "Пономаренко", "Головко", "Дорошенко", "Кириленко",
    "Назаренко", "Білик", "Гаврилюк", "Стельмах", "Рибак", "Федорук", "Грищенко", "Тарасенко",
    "Максименко", "Прокопенко", "Кучер", "Власенко", "Заїка", "Ярошенко", "Собко", "Гордієнко",
    "Дячук", "Лук'яненко", "Мартинюк", "Козак", "Шаповал", "Нестеренко", "Демченко", "Іваненко",
    "Пилипенко", "Василенко", "Сергієнко", "Гриценко", "Дмитренко", "Тищенко", "Гребенюк", "Кушнір",
    "Стецюк", "Жук", "Голуб", "Черненко", "Середа", "Щербак", "Єрмоленко", "Литвин", "Юхименко",
)  # fmt: skip
_GENDERED: Final = (
    ("Ковальський", "Ковальська"), ("Вишневський", "Вишневська"), ("Левицький", "Левицька"),
    ("Заболотний", "Заболотна"), ("Лозинський", "Лозинська"), ("Білоцерківський", "Білоцерківська"),
    ("Чорний", "Чорна"), ("Гладкий", "Гладка"), ("Яворський", "Яворська"), ("Садовий", "Садова"),
    ("Куликов", "Куликова"), ("Згурський", "Згурська"), ("Соболевський", "Соболевська"),
)  # fmt: skip
SURNAMES: Final[tuple[tuple[str, str], ...]] = tuple((s, s) for s in _INVARIANT) + _GENDERED

EMPLOYERS: Final[tuple[str, ...]] = (
    "ТОВ «Агросвіт Поділля»", "ПрАТ «Київміськбуд-Сервіс»", "ТОВ «Львівська кавова мануфактура»",
    "КП «Київпастранс»", "ТОВ «Дніпро Логістик»", "ПАТ «Укртелеком»", "ТОВ «Епіцентр К»",
    "ТОВ «Нова Пошта»", "КНП «Міська лікарня №3»", "ТОВ «Софтсерв»", "ТОВ «Одеський порт-термінал»",
    "Харківський національний університет", "ТОВ «Сільпо-Фуд»", "ПрАТ «Оболонь»", "ТОВ «Рошен»",
    "ТОВ «ЕПАМ Системз»", "Вінницька обласна рада", "ТОВ «Укрзалізниця-Сервіс»",
)  # fmt: skip
RELATIONSHIP_MANAGERS: Final[tuple[str, ...]] = (
    "Ірина Коваленко", "Олег Мельник", "Наталія Бондар", "Сергій Ткачук", "Юлія Руденко",
    "Андрій Савчук", "Оксана Левицька", "Дмитро Гончаренко", "Марія Яковенко", "Тарас Кравець",
)  # fmt: skip
# (branch label, weight): the capital and the big regional cities dominate.
BRANCHES: Final[tuple[tuple[str, int], ...]] = (
    ("kyiv-01", 14), ("kyiv-02", 12), ("kyiv-03", 9), ("lviv-01", 8), ("lviv-02", 5),
    ("odesa-01", 8), ("odesa-02", 4), ("kharkiv-01", 8), ("kharkiv-02", 4), ("dnipro-01", 8),
    ("dnipro-02", 4), ("vinnytsia-01", 5), ("zaporizhzhia-01", 4), ("poltava-01", 3),
    ("chernivtsi-01", 2), ("ivano-frankivsk-01", 2),
)  # fmt: skip
EMAIL_DOMAINS: Final[tuple[tuple[str, int], ...]] = (
    ("gmail.com", 55), ("ukr.net", 20), ("i.ua", 8), ("meta.ua", 4), ("outlook.com", 6),
    ("icloud.com", 4), ("yahoo.com", 3),
)  # fmt: skip
# Mobile operator codes: Kyivstar 67/68/96/97/98, Vodafone 50/66/95/99, lifecell 63/73/93.
MOBILE_CODES: Final[tuple[str, ...]] = (
    "50",
    "63",
    "66",
    "67",
    "68",
    "73",
    "93",
    "95",
    "96",
    "97",
    "98",
    "99",
)

_LATIN: Final[dict[str, str]] = {
    "а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "є": "ie", "ж": "zh",
    "з": "z", "и": "y", "і": "i", "ї": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n",
    "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ь": "", "ю": "iu", "я": "ia", "'": "", "’": "",
}  # fmt: skip
_LATIN_INITIAL: Final[dict[str, str]] = {"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"}


@lru_cache(maxsize=1024)
def transliterate(word: str) -> str:
    """Latin spelling of a Ukrainian word by the official 2010 table (Шевченко -> shevchenko)."""
    out: list[str] = []
    previous = ""
    for position, char in enumerate(word.lower()):
        if char == "г" and previous == "з":
            out.append("gh")
        elif position == 0 and char in _LATIN_INITIAL:
            out.append(_LATIN_INITIAL[char])
        else:
            out.append(_LATIN.get(char, char if char.isascii() and char.isalnum() else ""))
        previous = char
    return "".join(out)


# ------------------------------------------------------------------ vocabularies of events and interactions
APPLICATION_STEPS: Final[dict[str, tuple[str, ...]]] = {
    "consumer_loan": ("personal_data", "income", "documents", "review"),
    "card": ("personal_data", "card_design", "delivery", "review"),
    "deposit": ("personal_data", "amount_term", "review"),
    "current_account": ("personal_data", "documents", "review"),
    "insurance": ("personal_data", "coverage", "review"),
}
TARIFF_PAGES: Final[dict[str, str]] = {
    "current_account": "accounts",
    "deposit": "deposits",
    "card": "cards",
    "consumer_loan": "loans",
    "salary_project": "salary",
    "insurance": "insurance",
}
TARIFF_VARIANTS: Final = ("standard", "premium", "youth", "online", "pension", "compare")
AUTH_REASONS: Final[dict[str, tuple[str, ...]]] = {
    "password": ("wrong_password", "account_locked", "password_expired"),
    "otp": ("otp_expired", "otp_mismatch", "otp_not_delivered"),
    "biometric": ("biometric_mismatch", "biometric_unavailable"),
}
REGISTRATION_STEPS: Final = ("phone", "otp", "personal_data", "documents", "password")
CARD_ACTIVATION_STEPS: Final = ("open_card", "confirm_otp", "set_pin")
CALL_TOPICS: Final = (
    "card_blocked", "transfer_issue", "fees", "app_login", "deposit_terms", "loan_terms",
    "cashback", "limits", "statement", "currency_exchange", "loan_repayment", "offer",
)  # fmt: skip
TICKET_TOPICS: Final = ("card_reissue", "statement_request", "limit_change", "address_change", "chargeback")
TICKET_OUTCOMES: Final = ("done", "done", "done", "rejected", "duplicate")
COMPLAINT_TOPICS: Final = (
    "fees",
    "app_outage",
    "card_declined",
    "rude_staff",
    "transfer_delay",
    "collections",
)
RESOLUTIONS: Final = ("fee_refunded", "explained", "fixed", "compensation_paid", "no_fault_found")
CAMPAIGNS: Final = (
    "deposit-renewal-q3", "card-upsell-autumn", "loan-preapproved", "salary-onboarding",
    "insurance-cross-sell", "app-activation", "winback-dormant",
)  # fmt: skip
DECLINE_REASONS: Final = ("not_interested", "rate_too_high", "has_elsewhere", "call_later", "too_expensive")
BRANCH_PURPOSES: Final = (
    "cash",
    "consultation",
    "documents",
    "card_pickup",
    "deposit_opening",
    "loan_signing",
)
