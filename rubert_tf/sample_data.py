"""Small Russian sample data written by this project, so `rubert-tf quickstart` runs offline.

Everything here is generated from handwritten templates and word lists (with the case and gender
forms Russian needs), seeded, so every machine gets the same files:

- a plain-text corpus (documents of a few sentences, blank-line separated) and a held-out slice of it,
  for WordPiece vocab training and masked-LM pretraining;
- labelled sentiment sentences (positive / negative / neutral reviews) as CSV `text,label`;
- NER sentences in CoNLL/BIO (`token TAG` per line; PER, ORG, LOC), for `rubert-tf finetune ner`.

It is a sample, not training data: models trained on it only show that the pipeline works. Point the
same commands at your own text and labels for real results (see the README).
"""

import csv
import os
import random

SEED = 2024

# ----------------------------------------------------------------------------- handwritten corpus lines

HANDWRITTEN = """\
Москва — столица России и крупнейший город страны.
Утром в парке было тихо, только птицы пели на ветках старых лип.
Мы договорились встретиться у входа в библиотеку ровно в шесть часов вечера.
Новый мост через реку откроют для движения в начале следующего года.
Бабушка испекла пирог с яблоками и позвала внуков пить чай.
Учёные обнаружили в озере редкий вид водорослей, который считался исчезнувшим.
Поезд из Санкт-Петербурга прибыл на вокзал с опозданием на двадцать минут.
Команда выиграла финальный матч и вернулась домой с кубком.
Осенью листья клёна становятся ярко-красными, а берёзы желтеют раньше всех.
Врач посоветовал больше гулять на свежем воздухе и пить воду.
В музее открылась выставка русской живописи девятнадцатого века.
Компания объявила о запуске нового сервиса для малого бизнеса.
Ночью выпал первый снег, и к утру весь двор стал белым.
Студенты готовятся к экзаменам в читальном зале до позднего вечера.
Этот фильм получил главный приз кинофестиваля в Сочи.
Цены на овощи на рынке заметно выросли после холодного лета.
Мой друг учится играть на гитаре и уже знает несколько песен.
Министерство сообщило, что ремонт школы завершат к первому сентября.
На выходных мы поехали за город собирать грибы и ягоды.
Самолёт совершил посадку в аэропорту Казани точно по расписанию.
Книга рассказывает о жизни простой семьи в маленьком сибирском городе.
Дети построили во дворе большую снежную крепость.
Погода в Екатеринбурге завтра будет облачной, без осадков.
Ресторан на набережной славится своими пельменями и борщом.
Программист нашёл ошибку в коде и исправил её за пять минут.
Весной в саду зацвели вишни, и воздух наполнился ароматом.
Президент компании Иван Петров выступил на конференции в Новосибирске.
Река Волга — самая длинная река в Европе.
Кошка спала на подоконнике, греясь на солнце.
После дождя на небе появилась яркая радуга.
Театр готовит премьеру спектакля по пьесе Чехова «Вишнёвый сад».
Мы купили билеты на концерт симфонического оркестра.
Старый учитель помнил имена всех своих учеников.
Лаборатория разработала новый метод очистки воды.
Ёж медленно перешёл тропинку и скрылся в траве.
Завод увеличил выпуск продукции на пятнадцать процентов.
Туристы поднялись на вершину горы и любовались видом на долину.
Сегодня в городе проходит марафон, поэтому некоторые улицы перекрыты.
Сестра подарила мне на день рождения тёплый шарф.
Аналитики ожидают, что рубль укрепится в ближайшие месяцы.
"""
SAMPLE_CORPUS = HANDWRITTEN  # the name earlier releases used

# ----------------------------------------------------------------------------- word lists with their forms

# First names: (nominative, genitive); surnames are built from a masculine stem.
MALE_NAMES = [("Иван", "Ивана"), ("Алексей", "Алексея"), ("Дмитрий", "Дмитрия"), ("Сергей", "Сергея"),
              ("Андрей", "Андрея"), ("Михаил", "Михаила"), ("Николай", "Николая"), ("Павел", "Павла"),
              ("Артём", "Артёма"), ("Игорь", "Игоря"), ("Олег", "Олега"), ("Виктор", "Виктора"),
              ("Юрий", "Юрия"), ("Максим", "Максима"), ("Егор", "Егора"), ("Роман", "Романа")]
FEMALE_NAMES = [("Анна", "Анны"), ("Мария", "Марии"), ("Елена", "Елены"), ("Ольга", "Ольги"),
                ("Наталья", "Натальи"), ("Татьяна", "Татьяны"), ("Ирина", "Ирины"), ("Светлана", "Светланы"),
                ("Екатерина", "Екатерины"), ("Дарья", "Дарьи"), ("Юлия", "Юлии"), ("Алина", "Алины"),
                ("Ксения", "Ксении"), ("Полина", "Полины"), ("Вера", "Веры"), ("Марина", "Марины")]
SURNAMES = ["Петров", "Смирнов", "Кузнецов", "Соколов", "Попов", "Лебедев", "Козлов", "Новиков", "Морозов",
            "Волков", "Фёдоров", "Орлов", "Зайцев", "Белов", "Медведев", "Егоров", "Павлов", "Семёнов",
            "Голубев", "Виноградов", "Богданов", "Воробьёв", "Тарасов", "Беляев"]

# Places: nominative, genitive, the preposition of "where" and that case, the preposition of "to where".
CITIES = [("Москва", "Москвы", "в", "Москве", "Москву"), ("Санкт-Петербург", "Санкт-Петербурга", "в",
          "Санкт-Петербурге", "Санкт-Петербург"), ("Казань", "Казани", "в", "Казани", "Казань"),
          ("Новосибирск", "Новосибирска", "в", "Новосибирске", "Новосибирск"),
          ("Екатеринбург", "Екатеринбурга", "в", "Екатеринбурге", "Екатеринбург"),
          ("Нижний Новгород", "Нижнего Новгорода", "в", "Нижнем Новгороде", "Нижний Новгород"),
          ("Самара", "Самары", "в", "Самаре", "Самару"), ("Омск", "Омска", "в", "Омске", "Омск"),
          ("Ростов-на-Дону", "Ростова-на-Дону", "в", "Ростове-на-Дону", "Ростов-на-Дону"),
          ("Уфа", "Уфы", "в", "Уфе", "Уфу"), ("Красноярск", "Красноярска", "в", "Красноярске", "Красноярск"),
          ("Пермь", "Перми", "в", "Перми", "Пермь"), ("Воронеж", "Воронежа", "в", "Воронеже", "Воронеж"),
          ("Владивосток", "Владивостока", "во", "Владивостоке", "Владивосток"),
          ("Калининград", "Калининграда", "в", "Калининграде", "Калининград"),
          ("Сочи", "Сочи", "в", "Сочи", "Сочи"), ("Ярославль", "Ярославля", "в", "Ярославле", "Ярославль"),
          ("Иркутск", "Иркутска", "в", "Иркутске", "Иркутск"), ("Тула", "Тулы", "в", "Туле", "Тулу"),
          ("Мурманск", "Мурманска", "в", "Мурманске", "Мурманск"), ("Томск", "Томска", "в", "Томске", "Томск"),
          ("Великий Новгород", "Великого Новгорода", "в", "Великом Новгороде", "Великий Новгород")]
COUNTRIES = [("Россия", "России", "в", "России", "Россию"), ("Франция", "Франции", "во", "Франции", "Францию"),
             ("Германия", "Германии", "в", "Германии", "Германию"), ("Италия", "Италии", "в", "Италии", "Италию"),
             ("Китай", "Китая", "в", "Китае", "Китай"), ("Япония", "Японии", "в", "Японии", "Японию"),
             ("Казахстан", "Казахстана", "в", "Казахстане", "Казахстан"),
             ("Беларусь", "Беларуси", "в", "Беларуси", "Беларусь"), ("Турция", "Турции", "в", "Турции", "Турцию"),
             ("Индия", "Индии", "в", "Индии", "Индию"), ("Бразилия", "Бразилии", "в", "Бразилии", "Бразилию"),
             ("Египет", "Египта", "в", "Египте", "Египет"), ("Финляндия", "Финляндии", "в", "Финляндии", "Финляндию"),
             ("Испания", "Испании", "в", "Испании", "Испанию"), ("Армения", "Армении", "в", "Армении", "Армению")]
NATURE = [("Байкал", "Байкала", "на", "Байкале", "Байкал"), ("Алтай", "Алтая", "на", "Алтае", "Алтай"),
          ("Камчатка", "Камчатки", "на", "Камчатке", "Камчатку"), ("Урал", "Урала", "на", "Урале", "Урал"),
          ("Кавказ", "Кавказа", "на", "Кавказе", "Кавказ"), ("Волга", "Волги", "на", "Волге", "Волгу"),
          ("Крым", "Крыма", "в", "Крыму", "Крым"), ("Сибирь", "Сибири", "в", "Сибири", "Сибирь")]
LOCATIONS = CITIES + COUNTRIES + NATURE

# Organisations: nominative, genitive, prepositional (after "в"). All take singular present-tense verbs.
ORGANIZATIONS = [("Газпром", "Газпрома", "Газпроме"), ("Сбербанк", "Сбербанка", "Сбербанке"),
                 ("Яндекс", "Яндекса", "Яндексе"), ("Аэрофлот", "Аэрофлота", "Аэрофлоте"),
                 ("Роснефть", "Роснефти", "Роснефти"), ("Росатом", "Росатома", "Росатоме"),
                 ("Лукойл", "Лукойла", "Лукойле"), ("Ростелеком", "Ростелекома", "Ростелекоме"),
                 ("МГУ", "МГУ", "МГУ"), ("ВТБ", "ВТБ", "ВТБ"), ("ООН", "ООН", "ООН"), ("Магнит", "Магнита", "Магните"),
                 ("Большой театр", "Большого театра", "Большом театре"), ("Эрмитаж", "Эрмитажа", "Эрмитаже"),
                 ("Министерство финансов", "Министерства финансов", "Министерстве финансов"),
                 ("Центральный банк", "Центрального банка", "Центральном банке"),
                 ("Третьяковская галерея", "Третьяковской галереи", "Третьяковской галерее"),
                 ("Русский музей", "Русского музея", "Русском музее"),
                 ("Высшая школа экономики", "Высшей школы экономики", "Высшей школе экономики"),
                 ("Российская академия наук", "Российской академии наук", "Российской академии наук"),
                 ("Мариинский театр", "Мариинского театра", "Мариинском театре"),
                 ("Почта России", "Почты России", "Почте России")]

# Past-tense verb forms: (masculine, feminine, neuter, plural).


def past(stem, reflexive=False):
    if reflexive:
        return (stem + "ся", stem + "ась", stem + "ось", stem + "ись")
    return (stem, stem + "а", stem + "о", stem + "и")


GENDERS = {"m": 0, "f": 1, "n": 2, "pl": 3}

# ----------------------------------------------------------------------------- sentiment vocabulary

# Reviewed things: nominative, accusative, genitive, gender, kind.
ITEMS = [("фильм", "фильм", "фильма", "m", "media"), ("сериал", "сериал", "сериала", "m", "media"),
         ("книга", "книгу", "книги", "f", "media"), ("спектакль", "спектакль", "спектакля", "m", "media"),
         ("концерт", "концерт", "концерта", "m", "media"), ("игра", "игру", "игры", "f", "media"),
         ("альбом", "альбом", "альбома", "m", "media"), ("мультфильм", "мультфильм", "мультфильма", "m", "media"),
         ("телефон", "телефон", "телефона", "m", "goods"), ("ноутбук", "ноутбук", "ноутбука", "m", "goods"),
         ("наушники", "наушники", "наушников", "pl", "goods"), ("кроссовки", "кроссовки", "кроссовок", "pl", "goods"),
         ("куртка", "куртку", "куртки", "f", "goods"), ("пылесос", "пылесос", "пылесоса", "m", "goods"),
         ("чайник", "чайник", "чайника", "m", "goods"), ("рюкзак", "рюкзак", "рюкзака", "m", "goods"),
         ("кофеварка", "кофеварку", "кофеварки", "f", "goods"), ("планшет", "планшет", "планшета", "m", "goods"),
         ("ресторан", "ресторан", "ресторана", "m", "place"), ("отель", "отель", "отеля", "m", "place"),
         ("кафе", "кафе", "кафе", "n", "place"), ("магазин", "магазин", "магазина", "m", "place"),
         ("хостел", "хостел", "хостела", "m", "place"), ("кинотеатр", "кинотеатр", "кинотеатра", "m", "place"),
         ("пекарня", "пекарню", "пекарни", "f", "place"), ("парикмахерская", "парикмахерскую", "парикмахерской", "f",
                                                           "place"),
         ("доставка", "доставку", "доставки", "f", "service"), ("обслуживание", "обслуживание", "обслуживания", "n",
                                                                 "service"),
         ("приложение", "приложение", "приложения", "n", "service"), ("сервис", "сервис", "сервиса", "m", "service"),
         ("экскурсия", "экскурсию", "экскурсии", "f", "service"), ("поездка", "поездку", "поездки", "f", "service"),
         ("такси", "такси", "такси", "n", "service"), ("курс", "курс", "курса", "m", "service")]
DEMONSTRATIVE_ACC = {"m": "этот", "f": "эту", "n": "это", "pl": "эти"}
PRONOUN_ACC = {"m": "его", "f": "её", "n": "его", "pl": "их"}

# Adjectives: (stem, declension); see `adjective`.
POSITIVE_ADJECTIVES = [("отличн", "hard"), ("прекрасн", "hard"), ("замечательн", "hard"), ("великолепн", "hard"),
                       ("чудесн", "hard"), ("потрясающ", "soft"), ("хорош", "soft"), ("удобн", "hard"),
                       ("качественн", "hard"), ("приятн", "hard"), ("восхитительн", "hard"),
                       ("превосходн", "hard"), ("классн", "hard"), ("шикарн", "hard")]
NEGATIVE_ADJECTIVES = [("ужасн", "hard"), ("отвратительн", "hard"), ("плох", "oy"), ("скучн", "hard"),
                       ("неудобн", "hard"), ("некачественн", "hard"), ("кошмарн", "hard"), ("бесполезн", "hard"),
                       ("слаб", "hard"), ("неприятн", "hard"), ("посредственн", "hard"), ("жалк", "oy"),
                       ("безобразн", "hard"), ("халтурн", "hard")]
ENDINGS = {"hard": (("ый", "ая", "ое", "ые"), ("ым", "ой", "ым", "ыми")),
           "soft": (("ий", "ая", "ее", "ие"), ("им", "ей", "им", "ими")),
           "oy": (("ой", "ая", "ое", "ие"), ("им", "ой", "им", "ими"))}


def adjective(entry, gender, case="nom"):
    stem, declension = entry
    nominative, instrumental = ENDINGS[declension]
    return stem + (nominative if case == "nom" else instrumental)[GENDERS[gender]]


POSITIVE_INTENSIFIERS = ["", "", "очень", "просто", "действительно", "невероятно", "по-настоящему"]
NEGATIVE_INTENSIFIERS = ["", "", "очень", "просто", "совершенно", "крайне", "абсолютно"]
POSITIVE_ADVERBS = ["отлично", "прекрасно", "замечательно", "великолепно", "идеально", "на высоте", "супер"]
NEGATIVE_ADVERBS = ["ужасно", "отвратительно", "плохо", "из рук вон плохо", "кошмарно", "печально"]
OPENERS = ["", "", "", "Честно говоря, ", "В целом ", "Если коротко, ", "По-моему, ", "Скажу сразу: ",
           "Итак, ", "Что сказать, "]
POSITIVE_CLOSERS = ["всем советую", "обязательно вернусь ещё", "рекомендую друзьям", "ставлю пять звёзд",
                    "буду советовать знакомым", "спасибо большое", "очень доволен", "очень довольна",
                    "приятно удивлён", "приятно удивлена", "однозначно рекомендую"]
NEGATIVE_CLOSERS = ["не советую", "больше не вернусь", "деньги на ветер", "ставлю одну звезду",
                    "жалею о покупке", "очень разочарован", "очень разочарована", "никому не рекомендую",
                    "зря потратил время", "зря потратила время", "обходите стороной"]
LIKED = past("понравил", reflexive=True)
TURNED_OUT = past("оказал", reflexive=True)
DISAPPOINTED = past("разочаровал")
PLEASED = past("порадовал")
EXCEEDED = ("превзошёл", "превзошла", "превзошло", "превзошли")
BROKE = past("сломал", reflexive=True)
CAME_OUT = ("вышел", "вышла", "вышло", "вышли")
OPENED = past("открыл", reflexive=True)
WEEKDAYS = ["понедельник", "вторник", "среду", "четверг", "пятницу", "субботу", "воскресенье"]
NUMBER_WORDS = ["два", "три", "четыре", "пять", "шесть", "семь", "десять", "двенадцать", "пятнадцать", "двадцать"]


def _cap(text):
    return text[:1].upper() + text[1:]


def _speaker(rng):
    """Past-tense ending and short adjective ending of a male or female reviewer."""
    return rng.choice([("", ""), ("а", "а")])


def _positive(rng):
    nom, acc, gen, g, kind = rng.choice(ITEMS)
    i = GENDERS[g]
    adj = adjective(rng.choice(POSITIVE_ADJECTIVES), g)
    ins = adjective(rng.choice(POSITIVE_ADJECTIVES), g, "ins")
    inten = rng.choice(POSITIVE_INTENSIFIERS)
    inten = inten + " " if inten else ""
    ending, short = _speaker(rng)
    templates = [
        lambda: f"{rng.choice(OPENERS)}{nom} {inten}{adj}, {rng.choice(POSITIVE_CLOSERS)}{rng.choice('.!')}",
        lambda: f"Мне {rng.choice(['очень ', 'очень ', 'безумно ', ''])}{LIKED[i]} {nom}{rng.choice('.!')}",
        lambda: f"{_cap(nom)} {TURNED_OUT[i]} {inten}{ins}{rng.choice('.!')}",
        lambda: f"{_cap(nom)} {EXCEEDED[i]} все мои ожидания{rng.choice('.!')}",
        lambda: f"{_cap(nom)} {PLEASED[i]} с первой минуты, {rng.choice(POSITIVE_CLOSERS)}.",
        lambda: f"Спасибо за {acc}, всё {rng.choice(POSITIVE_ADVERBS)}!",
        lambda: f"Купил{ending} {acc} и ни разу не пожалел{ending}, {nom} {adj}.",
        lambda: f"{_cap(nom)} совсем не {adjective(rng.choice(NEGATIVE_ADJECTIVES), g)}, зря {PRONOUN_ACC[g]} ругают.",
        lambda: f"Давно не видел{ending} такой радости: {nom} {inten}{adj}!",
        lambda: f"{rng.choice(OPENERS)}это лучш{ENDINGS['soft'][0][i]} {nom} за последние годы{rng.choice('.!')}",
        lambda: f"Всё {rng.choice(POSITIVE_ADVERBS)}, {nom} {inten}{adj}, {rng.choice(POSITIVE_CLOSERS)}!",
    ]
    if kind == "place":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, персонал вежливый, обязательно придём ещё.")
    if kind == "goods":
        templates.append(lambda: f"Пользуюсь уже {rng.choice(NUMBER_WORDS[:4])} месяца, {nom} работает "
                                 f"{rng.choice(POSITIVE_ADVERBS)}.")
    if kind == "media":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, сюжет держит до самого конца{rng.choice('.!')}")
    if kind == "service":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, всё быстро и без проблем.")
    return _cap(rng.choice(templates)())


def _negative(rng):
    nom, acc, gen, g, kind = rng.choice(ITEMS)
    i = GENDERS[g]
    adj = adjective(rng.choice(NEGATIVE_ADJECTIVES), g)
    ins = adjective(rng.choice(NEGATIVE_ADJECTIVES), g, "ins")
    inten = rng.choice(NEGATIVE_INTENSIFIERS)
    inten = inten + " " if inten else ""
    ending, short = _speaker(rng)
    templates = [
        lambda: f"{rng.choice(OPENERS)}{nom} {inten}{adj}, {rng.choice(NEGATIVE_CLOSERS)}{rng.choice('.!')}",
        lambda: f"Мне {rng.choice(['совсем ', 'совершенно ', ''])}не {LIKED[i]} {nom}{rng.choice('.!')}",
        lambda: f"{_cap(nom)} {TURNED_OUT[i]} {inten}{ins}, зря потратил{ending} деньги.",
        lambda: f"{_cap(nom)} {DISAPPOINTED[i]} меня{rng.choice(['', ' полностью', ' с первой минуты'])}.",
        lambda: f"Никому не советую {DEMONSTRATIVE_ACC[g]} {acc}, {rng.choice(NEGATIVE_CLOSERS)}.",
        lambda: f"Всё {rng.choice(NEGATIVE_ADVERBS)}, {nom} {inten}{adj}.",
        lambda: f"Купил{ending} {acc} и сразу пожалел{ending}: {nom} {adj}.",
        lambda: f"{_cap(nom)} совсем не {adjective(rng.choice(POSITIVE_ADJECTIVES), g)}, {rng.choice(NEGATIVE_CLOSERS)}.",
        lambda: f"{rng.choice(OPENERS)}это худш{ENDINGS['soft'][0][i]} {nom} за последние годы{rng.choice('.!')}",
        lambda: f"Ожидал{ending} большего: {nom} {inten}{adj}, {rng.choice(NEGATIVE_CLOSERS)}.",
    ]
    if kind == "place":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, персонал грубый, больше не придём.")
    if kind == "goods":
        templates.append(lambda: f"{_cap(nom)} {BROKE[i]} через {rng.choice(['неделю', 'две недели', 'месяц'])}, "
                                 f"{rng.choice(NEGATIVE_CLOSERS)}.")
    if kind == "media":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, еле досидел{ending} до конца.")
    if kind == "service":
        templates.append(lambda: f"{_cap(nom)} {inten}{adj}, ждал{ending} больше часа и ничего не получил{ending}.")
    return _cap(rng.choice(templates)())


def _neutral(rng):
    nom, acc, gen, g, kind = rng.choice(ITEMS)
    i = GENDERS[g]
    ending, _ = _speaker(rng)
    city = rng.choice(CITIES)
    templates = [
        lambda: f"Обзор {gen} выйдет на следующей неделе.",
        lambda: f"Сегодня обсуждали {acc} на работе.",
        lambda: f"Про {acc} написали в новостях {city[1]}.",
        lambda: f"В {rng.choice(WEEKDAYS)} расскажу подробнее про {acc}.",
        lambda: f"Коллега спросил{ending}, что я думаю про {acc}.",
    ]
    if kind in ("goods", "service"):
        templates += [lambda: f"Я заказал{ending} {acc} в {rng.choice(WEEKDAYS)}.",
                      lambda: f"Я ещё не решил{ending}, брать ли {acc}."]
    if kind == "place":
        templates += [lambda: f"{_cap(nom)} {['находится', 'находится', 'находится', 'находятся'][i]} {city[2]} "
                              f"{city[3]}, недалеко от центра.",
                      lambda: f"{_cap(nom)} {OPENED[i]} {city[2]} {city[3]} в прошлом году.",
                      lambda: f"{_cap(nom)} работает с девяти утра до {rng.choice(['восьми', 'десяти'])} вечера."]
    if kind == "goods":
        templates += [lambda: f"Подскажите, где {city[2]} {city[3]} можно найти {acc}?",
                      lambda: f"Сравнил{ending} {acc} с прошлой моделью, отличия небольшие.",
                      lambda: f"Друг спросил, где я взял{ending} {acc}.",
                      lambda: f"Нужно уточнить, сколько {'стоят' if g == 'pl' else 'стоит'} {nom}.",
                      lambda: f"{_cap(nom)} {'продаются' if g == 'pl' else 'продаётся'} в {rng.choice(['двух', 'трёх', 'четырёх'])} цветах.",
                      lambda: f"Вес {gen} указан на коробке.",
                      lambda: f"Гарантия на {acc} — {rng.choice(['один год', 'два года', 'шесть месяцев'])}."]
    if kind == "media":
        templates += [lambda: f"{_cap(nom)} {CAME_OUT[i]} в {rng.randint(1995, 2024)} году.",
                      lambda: f"Премьера {gen} назначена на {rng.choice(WEEKDAYS)}.",
                      lambda: f"{_cap(nom)} {'читается' if nom == 'книга' else 'длится'} около "
                              f"{rng.choice(['двух', 'трёх'])} часов."]
    if kind == "service":
        templates += [lambda: f"{_cap(nom)} доступн{['ен', 'а', 'о', 'ы'][i]} {city[2]} {city[3]} с понедельника.",
                      lambda: f"Условия {gen} описаны на сайте."]
    return _cap(rng.choice(templates)())


SENTIMENT_LABELS = ("negative", "neutral", "positive")


def sentiment_examples(per_label=200, seed=SEED):
    """`per_label` distinct sentences for each of negative / neutral / positive, shuffled: [(text, label)]."""
    rng = random.Random(seed)
    makers = {"positive": _positive, "negative": _negative, "neutral": _neutral}
    examples, seen = [], set()
    for label, make in makers.items():
        count, attempts = 0, 0
        while count < per_label:
            attempts += 1
            if attempts > per_label * 200:
                raise RuntimeError(f"the {label} templates give fewer than {per_label} distinct sentences")
            text = make(rng)
            if text not in seen:
                seen.add(text)
                examples.append((text, label))
                count += 1
    rng.shuffle(examples)
    return examples


# ----------------------------------------------------------------------------- NER sentences


def _person(rng):
    """(nominative tokens, genitive tokens, gender)."""
    gender = rng.choice("mf")
    surname = rng.choice(SURNAMES)
    if gender == "m":
        first, first_gen = rng.choice(MALE_NAMES)
        last, last_gen = surname, surname + "а"
    else:
        first, first_gen = rng.choice(FEMALE_NAMES)
        last, last_gen = surname + "а", surname + "ой"
    style = rng.random()
    if style < 0.7:
        return [first, last], [first_gen, last_gen], gender
    if style < 0.85:
        return [last], [last_gen], gender
    return [first], [first_gen], gender


def _entity(tokens, kind):
    return [(token, ("B-" if j == 0 else "I-") + kind) for j, token in enumerate(tokens)]


def _words(text):
    return [(word, "O") for word in text.split()]


def _ner_sentence(rng):
    """One sentence as [(token, tag)], tokens split on spaces with punctuation as tokens of their own."""
    p_nom, p_gen, g = _person(rng)
    q_nom, q_gen, _ = _person(rng)
    m = 0 if g == "m" else 1
    loc = rng.choice(LOCATIONS)
    city = rng.choice(CITIES)
    city2 = rng.choice([c for c in CITIES if c is not city])
    country, country2 = rng.sample(COUNTRIES, 2)
    org, org2 = rng.sample(ORGANIZATIONS, 2)

    def P(tokens):
        return _entity(tokens, "PER")

    def L(text):
        return _entity(text.split(), "LOC")

    def O(text):
        return _entity(text.split(), "ORG")

    def where(place):   # "в Москве", "на Байкале"
        return _words(place[2]) + L(place[3])

    def to(place):      # "в Москву", "на Байкал"
        return _words("на" if place[2] == "на" else "в") + L(place[4])

    verb = {"arrived": ("приехал", "приехала"), "spoke": ("выступил", "выступила"), "met": ("встретился",
            "встретилась"), "born": ("родился", "родилась"), "moved": ("переехал", "переехала"),
            "told": ("рассказал", "рассказала"), "left": ("покинул", "покинула"), "visited": ("посетил",
            "посетила"), "said": ("заявил", "заявила"), "became": ("стал", "стала")}

    def v(name):
        return _words(verb[name][m])

    year = str(rng.randint(1990, 2024))
    role = rng.choice(["директор", "руководитель", "аналитик", "пресс-секретарь", "основатель", "представитель",
                       "эксперт", "сотрудник"])
    templates = [
        lambda: P(p_nom) + v("arrived") + to(loc) + _words("на конференцию ."),
        lambda: P(p_nom) + _words(f", {role}") + O(org[1]) + _words(",") + v("spoke") + where(city)
        + _words("с докладом ."),
        lambda: _words("По словам") + P(p_gen) + _words(",") + O(org[0]) + _words("планирует открыть офис")
        + where(city) + _words("."),
        lambda: O(org[0]) + _words("открывает новый филиал") + where(loc) + _words("."),
        lambda: _words("Вчера") + P(p_nom) + v("met") + _words("с журналистами") + where(loc) + _words("."),
        lambda: P(p_nom) + v("born") + where(city) + _words(", а теперь работает в") + O(org[2]) + _words("."),
        lambda: _words("Поезд из") + L(city[1]) + _words("в") + L(city2[4]) + _words("отправляется в полдень ."),
        lambda: _words("Сотрудники") + O(org[1]) + _words("посетили") + L(loc[4]) + _words("в прошлом месяце ."),
        lambda: L(country[0]) + _words("и") + L(country2[0]) + _words("подписали соглашение о туризме ."),
        lambda: _words("Мэр") + L(city[1]) + P(p_nom) + v("told") + _words("о новых проектах ."),
        lambda: _words("Туристы из") + L(country[1]) + _words("всё чаще едут") + to(rng.choice(CITIES + NATURE))
        + _words("."),
        lambda: P(p_nom) + _words(f"— {role}") + O(org[1]) + _words("."),
        lambda: _words("Сегодня утром") + where(city) + _words("прошла встреча") + P(p_gen) + _words("и")
        + P(q_gen) + _words("."),
        lambda: _words("В") + O(org[2]) + _words("сообщили , что") + P(p_nom) + v("left") + _words("свой пост ."),
        lambda: P(p_nom) + v("moved") + _words("из") + L(city[1]) + to(city2) + _words(f"в {year} году ."),
        lambda: _words("Акции") + O(org[1]) + _words(f"выросли на {rng.choice(NUMBER_WORDS)} процентов ."),
        lambda: O(org[0]) + _words("и") + O(org2[0]) + _words("договорились о совместном проекте ."),
        lambda: P(p_nom) + v("visited") + L(loc[4]) + _words("вместе с") + _words("коллегами из") + O(org[1])
        + _words("."),
        lambda: _words("Как") + v("said") + P(p_nom) + _words(",") + O(org[0]) + _words("не планирует уходить из")
        + L(country[1]) + _words("."),
        lambda: P(p_nom) + v("became") + _words(f"новым {rng.choice(['директором', 'руководителем'])}")
        + O(org[1]) + _words("."),
        lambda: _words("Выставка") + O(org[1]) + _words("откроется") + where(city) + _words("в следующую субботу ."),
        lambda: _words(f"В {year} году") + P(p_nom) + v("moved") + to(country) + _words("."),
        lambda: _words(rng.choice(["Погода сегодня тёплая , без осадков .", "Вечером мы долго гуляли по парку .",
                                   "Цены на овощи снова выросли .", "Завтра обещают сильный ветер и дождь .",
                                   "Дети весь день играли во дворе ."])),
    ]
    sentence = rng.choice(templates)()
    sentence[0] = (_cap(sentence[0][0]), sentence[0][1])
    return sentence


NER_LABELS = ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")


def ner_examples(count=400, seed=SEED + 1):
    """`count` distinct NER sentences: [[(token, BIO tag), ...]]."""
    rng = random.Random(seed)
    sentences, seen = [], set()
    attempts = 0
    while len(sentences) < count:
        attempts += 1
        if attempts > count * 100:
            raise RuntimeError(f"the NER templates give fewer than {count} distinct sentences")
        sentence = _ner_sentence(rng)
        key = " ".join(token for token, _ in sentence)
        if key not in seen:
            seen.add(key)
            sentences.append(sentence)
    return sentences


def detokenize(tokens):
    """Space-separated tokens -> text: no space before , . ! ? : and after «, none inside « »."""
    text = " ".join(tokens)
    for mark in (",", ".", "!", "?", ":", "»"):
        text = text.replace(" " + mark, mark)
    return text.replace("« ", "«")


# ----------------------------------------------------------------------------- corpus


def corpus_documents(num_documents=600, seed=SEED + 2, exclude=()):
    """Documents (lists of sentences) mixing reviews, news-like NER sentences and the handwritten lines."""
    rng = random.Random(seed)
    exclude = set(exclude)
    handwritten = [line for line in HANDWRITTEN.splitlines() if line.strip()]
    makers = [_positive, _negative, _neutral,
              lambda r: detokenize([t for t, _ in _ner_sentence(r)]),
              lambda r: detokenize([t for t, _ in _ner_sentence(r)]),
              lambda r: r.choice(handwritten)]
    documents = []
    for _ in range(num_documents):
        sentences, size = [], rng.randint(3, 8)
        while len(sentences) < size:
            sentence = rng.choice(makers)(rng)
            if sentence not in exclude:
                sentences.append(sentence)
        documents.append(sentences)
    return documents


def _write_documents(path, documents):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join("\n".join(sentences) for sentences in documents) + "\n")


def _write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _write_conll(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for sentence in sentences:
            f.write("".join(f"{token} {tag}\n" for token, tag in sentence) + "\n")


def write_sample_data(directory, test_fraction=0.2):
    """Write the whole sample into `directory`; returns {name: path}:

    corpus (corpus.txt) and corpus_heldout (corpus_heldout.txt): documents, blank-line separated;
    sentiment_train / sentiment_test (CSV text,label; 600 sentences, 200 per label);
    ner_train / ner_test (CoNLL: `token TAG`, blank line between sentences; 400 sentences).
    """
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, file) for name, file in (
        ("corpus", "corpus.txt"), ("corpus_heldout", "corpus_heldout.txt"),
        ("sentiment_train", "sentiment_train.csv"), ("sentiment_test", "sentiment_test.csv"),
        ("ner_train", "ner_train.bio"), ("ner_test", "ner_test.bio"))}
    sentiment = sentiment_examples()
    cut = int(len(sentiment) * (1 - test_fraction))
    _write_csv(paths["sentiment_train"], sentiment[:cut])
    _write_csv(paths["sentiment_test"], sentiment[cut:])
    ner = ner_examples()
    cut_ner = int(len(ner) * (1 - test_fraction))
    _write_conll(paths["ner_train"], ner[:cut_ner])
    _write_conll(paths["ner_test"], ner[cut_ner:])
    # The test sentences never appear in the pretraining text.
    held_out = {text for text, _ in sentiment[cut:]} | {detokenize([t for t, _ in s]) for s in ner[cut_ner:]}
    _write_documents(paths["corpus"], corpus_documents(600, exclude=held_out))
    _write_documents(paths["corpus_heldout"], corpus_documents(40, seed=SEED + 3, exclude=held_out))
    return paths


def write_sample_corpus(directory):
    """Write the handwritten sample lines as corpus.txt (one sentence a line) and return its path.

    (The small fixed corpus tests and notebooks build tiny checkpoints from; `write_sample_data` writes
    the larger generated sample the quickstart uses.)"""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(HANDWRITTEN)
    return path
